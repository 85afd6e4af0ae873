"""`stop` sequences cut at the edge, however the worker's tokens split them."""

from __future__ import annotations

import pytest

from broker.openai_api.streaming import StopCut, cut


@pytest.mark.parametrize(
    ("pieces", "stops", "passed", "stopped"),
    [
        (["hello ", "world"], [], "hello world", False),
        (["hello", " wor", "ld"], ["world"], "hello ", True),
        (["a\n", "\nb"], ["\n\n"], "a", True),  # split across two tokens
        (["abc"], ["x", "b"], "a", True),  # the first to appear wins
        (["ab", "c"], ["bcd"], "abc", False),  # a prefix of a stop held back, then let go
        (["stop"], ["stop"], "", True),
    ],
)
def test_stop_sequences_cut_the_stream(pieces: list[str], stops: list[str], passed: str, stopped: bool) -> None:
    stopper = StopCut(stops)
    out = "".join(stopper.feed(p) for p in pieces) + stopper.flush()
    assert (out, stopper.stopped) == (passed, stopped)
    assert cut("".join(pieces), stops) == (passed, stopped)


def test_only_as_much_text_as_a_stop_could_start_with_waits() -> None:
    stopper = StopCut(["END"])
    assert stopper.feed("one two ") == "one tw"  # the last two characters could begin "END"
    assert stopper.feed("three") == "o thr"
    assert stopper.feed(" END more") == "ee "
    assert stopper.feed("after") == "" and stopper.flush() == ""

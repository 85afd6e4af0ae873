"""What a stream passes on: `stop` sequences cut however the tokens split them, and
text repeated by a retried run or a re-attached stream passed on once."""

from __future__ import annotations

import pytest

from broker.openai_api.streaming import StopCut, Text, cut
from broker.protocol import Token


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


def tok(text: str, offset: int, run: int = 1) -> Token:
    return Token(guid="g", text=text, offset=offset, run=run)


def test_a_retried_run_passes_on_only_what_is_new() -> None:
    text = Text()
    assert [text.new(tok("one ", 0)), text.new(tok("two ", 4))] == ["one ", "two "]
    # The worker died; another one starts the answer again from the beginning.
    assert [text.new(tok("one ", 0, run=2)), text.new(tok("two three", 4, run=2))] == ["", "three"]
    assert text.rest("one two three four") == " four"


def test_a_re_attached_stream_catches_up_once() -> None:
    text = Text()
    text.new(tok("alpha ", 0))
    assert text.new(tok("alpha beta ", 0)) == "beta "  # the broker's catch-up: the whole run so far
    assert text.new(tok("gamma", 11)) == "gamma"


def test_a_run_that_answers_differently_passes_nothing_more() -> None:
    text = Text()
    text.new(tok("the cat", 0))
    assert text.new(tok("a dog sat", 0, run=2)) == ""
    assert text.new(tok(" down", 9, run=2)) == "" and text.rest("a dog sat down") == ""

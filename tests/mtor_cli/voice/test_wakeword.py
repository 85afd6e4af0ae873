"""The wake word and "goodbye", matched on transcripts as Whisper writes them."""

from __future__ import annotations

import pytest

from mtor_cli.voice import is_goodbye, match_wake_word


@pytest.mark.parametrize(
    ("transcript", "rest"),
    [
        ("Computer", ""),
        ("Computer.", ""),
        ("Computer, imagine a neon mountain.", "imagine a neon mountain."),
        ("Computer. Imagine a neon mountain.", "Imagine a neon mountain."),
        ("Hey computer, what time is it?", "what time is it?"),
        ("Computers, tell me a joke", "tell me a joke"),
        ("Komputer what is in this picture", "what is in this picture"),
    ],
)
def test_the_wake_word_first_is_heard(transcript: str, rest: str) -> None:
    got = match_wake_word(transcript)
    assert got.woke and got.request == rest


@pytest.mark.parametrize(
    "transcript",
    ["Imagine a neon mountain.", "my computer is broken", "Hello, my friend.", "Completely different", "", "..."],
)
def test_other_speech_does_not_wake(transcript: str) -> None:
    got = match_wake_word(transcript)
    assert not got.woke and got.request == ""


@pytest.mark.parametrize("text", ["goodbye", "Goodbye!", "Good bye.", "bye bye", "OK, goodbye computer."])
def test_goodbye(text: str) -> None:
    assert is_goodbye(text)


@pytest.mark.parametrize("text", ["say goodbye to the kids", "goodbye yellow brick road lyrics", "buy bread"])
def test_not_goodbye(text: str) -> None:
    assert not is_goodbye(text)

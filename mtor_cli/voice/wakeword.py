"""The wake word "Computer", found in the transcript of a short utterance.

Transcribing and then matching text (instead of a keyword-spotting model)
means one model serves both the wake word and the request, and a request in
one breath ("Computer, imagine a neon mountain") needs one transcription.
The match is forgiving about what a small speech model makes of the word
("Computer.", "computers", "Komputer") but only in first position.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

WAKE_WORD = "computer"
_MIN_SIMILARITY = 0.8
_LEAD = re.compile(r"^\W*(?:(?:hey|ok|okay|oh)\W+)?(?P<word>[A-Za-z][A-Za-z'-]*)\W*", re.IGNORECASE)
_GOODBYE = re.compile(
    r"^\W*(?:(?:ok|okay|well|so)\W+)?(?:good\W*bye|bye(?:\W+bye)?|farewell)(?:\W+(?:computer|now|then))?\W*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class WakeMatch:
    transcript: str
    woke: bool
    request: str  # what followed the wake word ("" when it was said alone)


def match_wake_word(transcript: str) -> WakeMatch:
    match = _LEAD.match(transcript)
    if match is None:
        return WakeMatch(transcript, False, "")
    word = match.group("word").lower()
    similarity = difflib.SequenceMatcher(None, word, WAKE_WORD).ratio()
    if similarity < _MIN_SIMILARITY:
        return WakeMatch(transcript, False, "")
    return WakeMatch(transcript, True, transcript[match.end() :].strip())


def is_goodbye(text: str) -> bool:
    """"Goodbye" (or "bye", "goodbye computer") said on its own ends a session."""
    return bool(_GOODBYE.match(text))


_YES = re.compile(
    r"^\W*(?:(?:computer|ok|okay|well)\W+)?(?:yes|yeah|yep|yup|sure|please\s+do|go\s+ahead|do\s+it|send\s+it"
    r"|confirm(?:ed)?|ok|okay)(?:\W+(?:please|thanks|thank\s+you|send\s+it|go\s+ahead|do\s+it))*\W*$",
    re.IGNORECASE,
)


def is_yes(text: str) -> bool:
    """A plain yes ("yes", "yes please", "send it", "go ahead"): anything else is no."""
    return bool(_YES.match(text))

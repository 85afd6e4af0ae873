"""Rule-based intent routing: the wake word and explicit verbs.

This is the first, cheap stage of intent recognition. It runs in the broker
for a `submit_query` that names no intent, and the client-side recogniser
(``mtor_cli.intent``) runs it before its embedding stage, so the rules live
in one place. Pure regex: no model, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INTENTS = ("chat", "vision", "imagine", "speech", "tts")

_WAKE = re.compile(r"^\s*(?:hey\s+|ok(?:ay)?\s+)?computer\b[\s,.:;!?-]*", re.IGNORECASE)

# (intent, pattern); the first match wins. A named group `prompt` is the part
# of the text the model should see ("imagine a neon mountain" -> "a neon mountain").
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "imagine",
        re.compile(
            r"^(?:please\s+)?(?:imagine|draw|paint|sketch|render|generate\s+(?:an?\s+)?(?:image|picture|photo)\s+of"
            r"|(?:make|create)\s+(?:me\s+)?(?:an?\s+)?(?:image|picture|drawing|painting)\s+of)\b[\s,:]*(?P<prompt>.+)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
    (
        "vision",
        re.compile(
            r"^(?P<prompt>(?:what(?:'s|\s+is)\s+(?:in|on)\s+(?:this|the)\s+(?:picture|image|photo)"
            r"|describe\s+(?:this|the)\s+(?:picture|image|photo)|caption\s+(?:this|the)\s+(?:picture|image|photo)).*)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
    (
        "speech",
        re.compile(r"^(?:please\s+)?transcribe\b[\s,:]*(?P<prompt>.*)$", re.IGNORECASE | re.DOTALL),
    ),
    (
        "tts",
        re.compile(
            r"^(?:please\s+)?(?:say|speak|read\s+(?:out|aloud))\b[\s,:]*(?P<prompt>.+)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
)


@dataclass(frozen=True)
class Routed:
    intent: str | None  # None: no rule matched
    prompt: str  # the text with the wake word (and the verb, where it is not part of the request) removed
    rule: str  # which rule decided, for `--explain`
    woke: bool  # the text started with the wake word


def strip_wake_word(text: str) -> tuple[str, bool]:
    stripped = _WAKE.sub("", text, count=1)
    return stripped.strip(), stripped != text


def route(text: str, attachment_kinds: tuple[str, ...] = ()) -> Routed:
    """Pick an intent from explicit phrasing, or None when no rule applies."""
    prompt, woke = strip_wake_word(text)
    for intent, pattern in _RULES:
        match = pattern.match(prompt)
        if match:
            return Routed(intent, match.group("prompt").strip(), f"rule:{intent}", woke)
    if "image" in attachment_kinds:
        return Routed("vision", prompt, "attachment:image", woke)
    if "audio" in attachment_kinds:
        return Routed("speech", prompt, "attachment:audio", woke)
    return Routed(None, prompt, "none", woke)

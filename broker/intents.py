"""Rule-based intent routing: the wake word and explicit verbs.

This is the first, cheap stage of intent recognition. It runs in the broker
for a `submit_query` that names no intent, and the client-side recogniser
(``mtor_cli.intent``) runs it before its embedding stage, so the rules live
in one place. Pure regex: no model, no I/O.

Rules aim for precision, not recall: a phrasing a rule misses still reaches
the embedding stage on the client, while a rule that fires wrongly can never
be overruled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INTENTS = ("chat", "vision", "imagine", "speech", "tts")

_WAKE = re.compile(r"^\s*(?:hey\s+|ok(?:ay)?\s+)?computer\b[\s,.:;!?-]*", re.IGNORECASE)

# Politeness that precedes a verb without changing the request:
# "please draw ...", "could you please transcribe ...", "I'd like you to paint ...".
_POLITE = (
    r"(?:(?:please|kindly)\s+"
    r"|(?:can|could|would|will)\s+you\s+(?:please\s+)?"
    r"|i(?:'d|\s+would)\s+like\s+you\s+to\s+"
    r"|i\s+want\s+you\s+to\s+)?"
)
_MEDIA = r"(?:picture|image|photo|photograph|pic|drawing|painting|illustration|sketch|render(?:ing)?|artwork|wallpaper)"
_STYLE = r"(?:oil|pencil|charcoal|ink|digital|cartoon|pixel|photorealistic|realistic|abstract|3d)"
_LOOK = r"(?:picture|image|photo|photograph|pic|screenshot|scan)"
_SOUND = r"(?:recording|audio|clip|voice\s+memo|voice\s+message|voicemail|sound\s+file|audio\s+file|podcast|tape)"

# (intent, rule name, pattern); the first match wins. A named group `prompt` is the part
# of the text the model should see ("imagine a neon mountain" -> "a neon mountain").
_RULES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (
        "imagine",
        "verb",
        re.compile(
            rf"^{_POLITE}(?:imagine|draw|paint|sketch|render|illustrate|visuali[sz]e"
            rf"|(?:generate|make|create|produce|design)\s+(?:me\s+)?(?:an?\s+)?{_MEDIA}\s+(?:of|showing|with)"
            rf"|show\s+me\s+(?:an?\s+)?{_MEDIA}\s+of)\b[\s,:]*(?P<prompt>.+)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
    # A request that is only a description of a picture: "a watercolour of a harbour".
    (
        "imagine",
        "picture-of",
        re.compile(rf"^(?:an?\s+)?(?:{_STYLE}\s+)?{_MEDIA}\s+of\s+(?P<prompt>.+)$", re.IGNORECASE | re.DOTALL),
    ),
    (
        "vision",
        "question",
        re.compile(
            rf"^{_POLITE}(?P<prompt>(?:what(?:'s|\s+is)\s+(?:in|on)\s+(?:this|the|my)\s+{_LOOK}"
            rf"|what\s+(?:do|can)\s+you\s+see\s+(?:in|on)\s+(?:this|the|my)\s+{_LOOK}"
            rf"|what\s+does\s+(?:this|the|my)\s+{_LOOK}\s+show"
            rf"|(?:describe|caption|look\s+at)\s+(?:this|the|my)\s+{_LOOK}).*)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
    (
        "speech",
        "verb",
        re.compile(
            rf"^{_POLITE}(?:transcribe\b[\s,:]*(?P<prompt>.*)"
            rf"|(?P<asked>what\s+(?:does|did)\s+(?:this|the|my)\s+{_SOUND}\s+say.*))$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
    # A question about a picture or a recording the person points at:
    # "is the man in this photo smiling", "what are they saying in my voice memo".
    (
        "vision",
        "this-picture",
        re.compile(
            rf"^(?P<prompt>.*\b(?:in|on|from|of)\s+(?:this|these|the\s+attached|my|the)\s+{_LOOK}s?\b.*)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
    (
        "speech",
        "this-recording",
        re.compile(
            rf"^(?P<asked>.*\b(?:in|on|from|of)\s+(?:this|these|the\s+attached|my|the)\s+{_SOUND}s?\b.*)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
    (
        "speech",
        "speech-to-text",
        re.compile(r"^(?P<asked>.*\b(?:speech|voice)[\s-]+to[\s-]+text\b.*)$", re.IGNORECASE | re.DOTALL),
    ),
    (
        "tts",
        "text-to-speech",
        re.compile(r"^(?P<asked>.*\btext[\s-]+to[\s-]+(?:speech|voice)\b.*)$", re.IGNORECASE | re.DOTALL),
    ),
    (
        "tts",
        "verb",
        re.compile(
            # "say, what is ..." is conversation, not a request to speak: no comma after "say".
            rf"^{_POLITE}(?:say(?!\s*,)|speak|read\s+(?:(?:this|it|the\s+following)\s+)?(?:out\s+loud|aloud|out))\b"
            r"[\s,:]*(?P<prompt>.+)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
)

# A spoken or typed request often ends with a full stop the model does not need
# ("imagine a neon mountain." -> "a neon mountain"); question marks carry meaning.
_TRAILING_STOP = re.compile(r"[\s.!]+$")


@dataclass(frozen=True)
class Routed:
    intent: str | None  # None: no rule matched
    prompt: str  # the text with the wake word (and the verb, where it is not part of the request) removed
    rule: str  # which rule decided, for `--explain`
    woke: bool  # the text started with the wake word


def strip_wake_word(text: str) -> tuple[str, bool]:
    stripped = _WAKE.sub("", text, count=1)
    return stripped.strip(), stripped != text


def _prompt_of(match: re.Match[str]) -> str:
    groups = match.groupdict()
    prompt = groups.get("prompt")
    if prompt is None:
        prompt = groups.get("asked") or ""
    return _TRAILING_STOP.sub("", prompt.strip())


def route(text: str, attachment_kinds: tuple[str, ...] = ()) -> Routed:
    """Pick an intent from explicit phrasing, or None when no rule applies."""
    prompt, woke = strip_wake_word(text)
    for intent, name, pattern in _RULES:
        match = pattern.match(prompt)
        if match:
            return Routed(intent, _prompt_of(match), f"rule:{intent}:{name}", woke)
    if "image" in attachment_kinds:
        return Routed("vision", prompt, "attachment:image", woke)
    if "audio" in attachment_kinds:
        return Routed("speech", prompt, "attachment:audio", woke)
    return Routed(None, prompt, "none", woke)


def chat_can_answer(intent: str, source: str, attachment_kinds: tuple[str, ...] = ()) -> bool:
    """Whether chat may answer a request recognised as ``intent`` (by ``source``,
    e.g. "rule:tts:verb") when nothing in the realm serves that intent.

    "Say hello" matches the tts verb rule but reads as conversation, and so does
    anything only the embedding stage placed. A request that is clearly for
    another kind of model is not: a picture asked for by verb ("draw a cat"),
    audio to transcribe, or any attached file to look at or listen to. Words
    from chat would not answer those; the person needs the fix instead.
    """
    if attachment_kinds or intent == "chat":
        return False
    return not source.startswith(("rule:imagine", "rule:speech", "attachment:"))

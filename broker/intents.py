"""Rule-based intent routing: the wake word and explicit verbs.

This is the first, cheap stage of intent recognition. It runs in the broker
for a `submit_query` that names no intent, and the client-side recogniser
(``mtor_cli.intent``) runs it before its embedding stage, so the rules live
in one place. Pure regex: no model, no I/O.

Rules aim for precision, not recall: a phrasing a rule misses still reaches
the embedding stage on the client, while a rule that fires wrongly can never
be overruled. Weather and email rules keep the whole request as the prompt:
those workers read the place, the day or the recipient from it themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INTENTS = ("chat", "vision", "imagine", "speech", "tts", "embed", "weather", "email")
# Intents that act on the asker's own accounts: served only by a worker
# registered by the asker's address (BrokerConfig.owner_only_intents).
OWNER_ONLY_INTENTS = frozenset({"email"})

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

_MAIL = r"(?:e-?mails?|mail|inbox|messages)"
_CONDITION = r"(?:rain|snow|hail|storm|freeze|be\s+(?:sunny|windy|rainy|snowy|cloudy|stormy|foggy|cold|hot|warm|chilly))"

# (intent, rule name, pattern); the first match wins. A named group `prompt` is the part
# of the text the model should see ("imagine a neon mountain" -> "a neon mountain");
# `asked` keeps the whole request, for workers that read it themselves (weather, email).
_RULES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (
        "weather",
        "question",
        re.compile(
            r"^(?P<asked>(?:what(?:'s|\s+is|\s+will)\s+the\s+(?:weather|forecast)"
            r"|how(?:'s|\s+is)\s+the\s+weather"
            r"|(?:check|get|tell\s+me|give\s+me|show\s+me)\s+the\s+(?:weather|forecast)"
            r"|(?:the\s+)?(?:weather|forecast)\s+(?:in|for|today|tomorrow|tonight|this|at)\b"
            rf"|(?:will|is)\s+it\s+(?:going\s+to\s+|gonna\s+)?{_CONDITION}"
            r"|do\s+i\s+need\s+an?\s+(?:umbrella|raincoat|coat|jacket)).*)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
    (
        "email",
        "read",
        re.compile(
            rf"^{_POLITE}(?P<asked>(?:(?:read|check|show)\s+(?:me\s+)?my\s+(?:\w+\s+){{0,2}}{_MAIL}"
            rf"|(?:any\s+|do\s+i\s+have\s+(?:any\s+)?)(?:new\s+|unread\s+)?(?:e-?mails?|mail)\b"
            rf"|what(?:'s|\s+is)\s+in\s+my\s+inbox).*)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
    (
        "email",
        "send",
        re.compile(
            rf"^{_POLITE}(?P<asked>(?:e-?mail\s+\S.*\b(?:about|saying|that|re)\b"
            r"|(?:send|drop|shoot|fire\s+off)\s+(?:an?\s+)?(?:quick\s+|short\s+)?(?:e-?mail|note|line|message)\s+to\b"
            r"|send\s+\S+(?:\s+\S+)?\s+an?\s+e-?mail\b"
            r"|write\s+to\s+\S+\s+(?:saying|to\s+say|telling\s+(?:him|her|them))\b).*)$",
            re.IGNORECASE | re.DOTALL,
        ),
    ),
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

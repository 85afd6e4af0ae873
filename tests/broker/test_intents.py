"""The broker's rule stage of intent recognition (broker/intents.py): explicit
phrasings decide, with the prompt cut to what the model needs; anything else
is left to the next stage."""

from __future__ import annotations

import pytest

from broker.intents import route, strip_wake_word


@pytest.mark.parametrize(
    ("text", "intent", "prompt", "rule"),
    [
        ("Computer, imagine a neon mountain.", "imagine", "a neon mountain", "rule:imagine:verb"),
        ("could you please draw a cat on a skateboard", "imagine", "a cat on a skateboard", "rule:imagine:verb"),
        ("make me a picture of a dog", "imagine", "a dog", "rule:imagine:verb"),
        ("an oil painting of a quiet harbour", "imagine", "a quiet harbour", "rule:imagine:picture-of"),
        ("what is in this picture?", "vision", "what is in this picture?", "rule:vision:question"),
        ("is the man in the photo smiling", "vision", "is the man in the photo smiling", "rule:vision:this-picture"),
        ("Computer, transcribe my voice memo", "speech", "my voice memo", "rule:speech:verb"),
        ("what does this recording say", "speech", "what does this recording say", "rule:speech:verb"),
        ("who is speaking in this clip", "speech", "who is speaking in this clip", "rule:speech:this-recording"),
        ("speech to text for this file", "speech", "speech to text for this file", "rule:speech:speech-to-text"),
        ("say hello world", "tts", "hello world", "rule:tts:verb"),
        ("read this out loud: dinner is ready", "tts", "dinner is ready", "rule:tts:verb"),
        ("Computer, what's the weather in Paris tomorrow?", "weather", "what's the weather in Paris tomorrow?",
         "rule:weather:question"),
        ("will it rain in Oslo", "weather", "will it rain in Oslo", "rule:weather:question"),
        ("Computer, check the weather.", "weather", "check the weather", "rule:weather:question"),
        ("read my latest emails", "email", "read my latest emails", "rule:email:read"),
        ("any mail from Alice today?", "email", "any mail from Alice today?", "rule:email:read"),
        ("email Bob about Friday's meeting", "email", "email Bob about Friday's meeting", "rule:email:send"),
        ("send Bob an email about lunch", "email", "send Bob an email about lunch", "rule:email:send"),
    ],
)
def test_explicit_phrasings_decide(text: str, intent: str, prompt: str, rule: str) -> None:
    routed = route(text)
    assert (routed.intent, routed.prompt, routed.rule) == (intent, prompt, rule)


@pytest.mark.parametrize(
    "text",
    [
        "tell me a joke",
        "say, what is the boiling point of water",
        "what is the capital of France",
        "hmm",
        "",
        "help me write a polite email declining a meeting",
        "how do weather satellites work",
    ],
)
def test_no_rule_for_ordinary_questions(text: str) -> None:
    routed = route(text)
    assert routed.intent is None and routed.rule == "none" and routed.prompt == text


def test_attachments_decide_when_no_phrase_does() -> None:
    assert route("and this?", ("image",)).intent == "vision"
    assert route("and this?", ("audio",)).rule == "attachment:audio"
    assert route("imagine this as a painting", ("image",)).intent == "imagine"  # an explicit verb wins


def test_the_wake_word_is_stripped() -> None:
    assert strip_wake_word("Hey Computer, tell me a joke") == ("tell me a joke", True)
    assert strip_wake_word("my computer is slow") == ("my computer is slow", False)
    assert route("Computer").woke and route("Computer").prompt == ""

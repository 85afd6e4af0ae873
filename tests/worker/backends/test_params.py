"""Each backend's parameters are declared once: what it advertises is what it checks."""

from __future__ import annotations

from typing import Any

import pytest

from worker.backends.base import Backend, BadInput, Device
from worker.backends.chat import ChatBackend
from worker.backends.echo import EchoBackend
from worker.backends.imagine import ImagineBackend
from worker.backends.stt import SpeechBackend
from worker.backends.tts import TTSBackend
from worker.backends.vision import VisionBackend

BACKENDS: list[type[Backend]] = [ChatBackend, EchoBackend, ImagineBackend, SpeechBackend, TTSBackend, VisionBackend]


@pytest.mark.parametrize("cls", BACKENDS, ids=lambda c: c.intent)
def test_the_advertised_schema_is_what_validation_enforces(cls: type[Backend]) -> None:
    backend = cls(None, Device())
    schema = backend.capability().params
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    properties: dict[str, Any] = schema["properties"]
    assert properties, f"{cls.intent} declares no parameters"
    for name, prop in properties.items():
        assert prop["description"], f"{cls.intent}.{name} has no help"
        if "maximum" in prop:
            too_big = prop["maximum"] + 1
            with pytest.raises(BadInput) as info:
                backend.params.parse({name: too_big})
            assert info.value.code == "bad_params"
            assert f"{name}={too_big!r} is out of range" in info.value.message
            assert str(int(prop["maximum"])) in info.value.hint
        if "default" in prop:
            assert backend.params.parse({})[name] == prop["default"]
    with pytest.raises(BadInput) as info:
        backend.params.parse({"no_such_param": 1})
    assert f"unknown {cls.intent} parameter(s): no_such_param" in info.value.message
    assert all(name in info.value.hint for name in properties)


def test_an_operators_narrower_limit_is_advertised_and_enforced() -> None:
    backend = ImagineBackend("unused", Device(), max_steps=8)
    assert backend.capability().params["properties"]["steps"]["maximum"] == 8
    with pytest.raises(BadInput, match="steps=9 is out of range"):
        backend.params.parse({"steps": 9})


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"max_tokens": True}, "max_tokens must be an integer, got True"),
        ({"temperature": "hot"}, "temperature must be a number, got 'hot'"),
        ({"top_p": 0}, "top_p=0 keeps no tokens"),
        ({"history": [{"role": "robot", "content": "x"}]}, "history must be a list of {role, content} turns"),
        ({"system": 3}, "system must be text, got 3"),
    ],
)
def test_chat_refuses_bad_parameters_by_name(params: dict[str, Any], says: str) -> None:
    with pytest.raises(BadInput) as info:
        ChatBackend(None, Device()).params.parse(params)
    assert info.value.code == "bad_params" and says in info.value.message and info.value.hint


def test_chat_fills_its_defaults_and_keeps_integers_where_numbers_are_asked() -> None:
    parsed = ChatBackend(None, Device()).params.parse({"temperature": 0, "seed": 7})
    assert parsed == {
        "max_tokens": 256, "temperature": 0.0, "top_p": 0.9, "seed": 7, "system": None, "history": [],
    }

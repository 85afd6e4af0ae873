"""Backends are found by intent: the decorator, entry points, and clear errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from worker import Backend, available_intents, backend_class, register_backend
from worker.backends import registry
from worker.backends.chat import ChatBackend
from worker.backends.echo import EchoBackend


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_registered", {})


def test_builtin_intents_come_from_entry_points() -> None:
    assert {"chat", "echo"} <= set(available_intents())
    assert backend_class("chat") is ChatBackend
    assert backend_class("echo") is EchoBackend


def test_decorator_registers_a_new_intent() -> None:
    @register_backend
    class Shout(Backend):
        intent = "shout"

        async def run(self, work, out):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    assert backend_class("shout") is Shout
    assert "shout" in available_intents()


def test_decorator_needs_an_intent() -> None:
    class Nameless(Backend):
        async def run(self, work, out):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    with pytest.raises(TypeError, match="intent"):
        register_backend(Nameless)


def test_unknown_intent_lists_the_available_ones() -> None:
    with pytest.raises(registry.UnknownIntent) as err:
        backend_class("teleport")
    assert "teleport" in str(err.value)
    assert "chat" in err.value.hint and "echo" in err.value.hint


def test_a_plugin_package_adds_an_intent_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real installed-package layout: a module plus its .dist-info with entry_points.txt.
    (tmp_path / "mtor_haiku.py").write_text(
        textwrap.dedent(
            """
            from worker import Backend

            class HaikuBackend(Backend):
                intent = "haiku"

                async def run(self, work, out):
                    raise NotImplementedError
            """
        )
    )
    info = tmp_path / "mtor_haiku-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mtor-haiku\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[mtor.backends]\nhaiku = mtor_haiku:HaikuBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mtor_haiku", raising=False)

    assert "haiku" in available_intents()
    cls = backend_class("haiku")
    assert cls.__name__ == "HaikuBackend" and cls.intent == "haiku"

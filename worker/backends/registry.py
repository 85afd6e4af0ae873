"""Which Backend class serves which intent.

Two ways in, like `llm` plugins: the ``@register_backend`` decorator (code in
this process) and the ``mtor.backends`` entry-point group (a package declares
``intent = "module:Class"`` in its pyproject). A plugin thereby adds an intent
without touching the broker or the worker loop. Entry points are only imported
when their intent is asked for, so listing intents stays cheap.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from broker.protocol import MtorError
from worker.backends.base import Backend

ENTRY_POINT_GROUP = "mtor.backends"

_registered: dict[str, type[Backend]] = {}


class UnknownIntent(MtorError):
    """No backend is registered for the intent."""

    def __init__(self, intent: str, available: list[str]) -> None:
        super().__init__(
            "unknown_intent",
            f"no backend serves intent {intent!r}",
            "available intents: " + (", ".join(available) or "none"),
        )
        self.intent = intent
        self.available = available


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make ``cls`` the backend for ``cls.intent``."""
    intent = getattr(cls, "intent", None)
    if not isinstance(intent, str) or not intent:
        raise TypeError(f"{cls.__name__} needs a class attribute `intent` (a non-empty str)")
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{cls!r} is not a worker.backends.base.Backend subclass")
    _registered[intent] = cls
    return cls


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_intents() -> list[str]:
    """Every intent a backend is known for, sorted."""
    return sorted(set(_registered) | set(_entry_points()))


def backend_class(intent: str) -> type[Backend]:
    """The Backend class for ``intent``; raises :class:`UnknownIntent`."""
    if intent in _registered:
        return _registered[intent]
    ep = _entry_points().get(intent)
    if ep is None:
        raise UnknownIntent(intent, available_intents())
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"entry point {ep.name} = {ep.value} is not a Backend subclass")
    # Keep the first registration: a decorated class imported by ep.load()
    # registers itself, and that is the same class.
    _registered.setdefault(intent, cls)
    return _registered[intent]

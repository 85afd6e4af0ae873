"""What a broker knows of the other brokers of its realm.

A lone broker knows nothing of others (:class:`Alone`); a broker of a shared
realm reads broker.engine.state.RealmState, refreshed at every beat. The
dispatcher asks it whether any worker anywhere serves an intent; the views add
its brokers and workers to their own, so every figure a broker shows is the
realm's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Others(Protocol):
    def others(self) -> list[dict[str, Any]]:
        """The other brokers' descriptions (RealmViews.describe of each)."""
        ...

    def remote_workers(self) -> list[dict[str, Any]]:
        """The workers connected to other brokers (WorkerEntry.to_dict, with ``broker``)."""
        ...

    def intents(self) -> set[str]:
        """Every intent some worker on another broker serves."""
        ...

    def can_serve(self, intent: str, model: str | None, user: str | None = None) -> bool:
        """A worker on another broker, outside quarantine, serves this intent (and
        model) to ``user`` (an owner-only intent: only the asker's own worker)."""
        ...

    def tell_others(self, kind: str, payload: bytes) -> None:
        """Deliver a notice to every other broker (their ``on(kind)`` handler)."""
        ...

    def tell(self, broker: str, kind: str, payload: bytes) -> None:
        """Deliver a notice to one broker."""
        ...

    def on(self, kind: str, handle: Callable[[bytes], None]) -> None:
        """``handle(payload)`` gets every notice of ``kind`` other brokers send."""
        ...

    async def live_guids(self, user: str) -> list[str]:
        """``user``'s intents queued or running anywhere in the realm."""
        ...

    def watching(self) -> bool:
        """Another broker has subscribers (who see this broker's events too)."""
        ...


class Alone:
    """A lone broker's realm: no other brokers, no workers but its own."""

    def others(self) -> list[dict[str, Any]]:
        return []

    def remote_workers(self) -> list[dict[str, Any]]:
        return []

    def intents(self) -> set[str]:
        return set()

    def can_serve(self, intent: str, model: str | None, user: str | None = None) -> bool:
        return False

    def tell_others(self, kind: str, payload: bytes) -> None:
        pass

    def tell(self, broker: str, kind: str, payload: bytes) -> None:
        pass

    def on(self, kind: str, handle: Callable[[bytes], None]) -> None:
        pass

    async def live_guids(self, user: str) -> list[str]:
        return []

    def watching(self) -> bool:
        return False

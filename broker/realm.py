"""What a broker knows of the other brokers of its realm.

A lone broker knows nothing of others (:class:`Alone`); a broker of a shared
realm reads broker.engine.state.RealmState, refreshed at every beat. The
dispatcher asks it whether any worker anywhere serves an intent; the views add
its brokers and workers to their own, so every figure a broker shows is the
realm's.
"""

from __future__ import annotations

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

    def can_serve(self, intent: str, model: str | None) -> bool:
        """A worker on another broker, outside quarantine, serves this intent (and model)."""
        ...


class Alone:
    """A lone broker's realm: no other brokers, no workers but its own."""

    def others(self) -> list[dict[str, Any]]:
        return []

    def remote_workers(self) -> list[dict[str, Any]]:
        return []

    def intents(self) -> set[str]:
        return set()

    def can_serve(self, intent: str, model: str | None) -> bool:
        return False

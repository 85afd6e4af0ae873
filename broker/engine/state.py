"""What this broker knows of the rest of the realm, as of its last beat.

Every beat (``engine_beat_s``) a broker writes its own description to Redis
and reads everyone's: the other brokers (their clients, workers, load,
counters), every worker of the realm, and the queues' depths per intent and
user. Views, admission (is there a worker for this intent anywhere?) and
/metrics read this copy without a round trip; it is at most one beat old.
"""

from __future__ import annotations

from typing import Any

from broker.health import QUARANTINED


class RealmState:
    def __init__(self, broker_id: str) -> None:
        self._me = broker_id
        self.brokers: dict[str, dict[str, Any]] = {}  # every broker, this one included
        self.workers: list[dict[str, Any]] = []  # every worker of the realm, with its broker
        self.queues: dict[str, dict[str, Any]] = {}  # intent -> {depth, users: {user: queued}}
        # Other brokers' workers by intent: (models, usable, owner: the only
        # address it serves for an owner-only intent, else None).
        self._serving: dict[str, list[tuple[frozenset[str], bool, str | None]]] = {}
        self.watching = False  # another broker has subscribers

    def update(self, brokers: list[dict[str, Any]], workers: list[dict[str, Any]], queues: dict[str, Any]) -> None:
        self.brokers = {str(b["id"]): b for b in brokers}
        self.workers = workers
        self.queues = queues if isinstance(queues, dict) else {}
        serving: dict[str, list[tuple[frozenset[str], bool, str | None]]] = {}
        for w in workers:
            if w.get("broker") == self._me:
                continue
            usable = (w.get("health") or {}).get("state") != QUARANTINED
            address = str(w.get("address", "")).lower()
            for cap in w.get("capabilities", ()):
                owner = address if cap.get("owner_only") else None
                serving.setdefault(cap["intent"], []).append((frozenset(cap.get("models", ())), usable, owner))
        self._serving = serving
        self.watching = any(int(b.get("subscribers", 0)) for b in self.others())

    def others(self) -> list[dict[str, Any]]:
        """The other brokers' descriptions."""
        return [b for id_, b in self.brokers.items() if id_ != self._me]

    def remote_workers(self) -> list[dict[str, Any]]:
        return [w for w in self.workers if w.get("broker") != self._me]

    def intents(self) -> set[str]:
        return set(self._serving)

    def can_serve(self, intent: str, model: str | None, user: str | None = None) -> bool:
        asker = (user or "").lower()
        return any(
            usable and (model is None or model in models) and (owner is None or owner == asker)
            for models, usable, owner in self._serving.get(intent, ())
        )


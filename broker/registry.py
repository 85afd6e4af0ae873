"""Connected workers: what each serves, its slots, its running jobs and its health.

The dispatcher asks :meth:`WorkerRegistry.pick` for the healthiest,
least-loaded worker that can take a job. Only this broker's own workers are
here; in a realm of brokers the others' are in broker.realm.Others, and a
job reaches them through the shared queue (their broker pulls it).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

from broker.config import BrokerConfig
from broker.health import QUARANTINED, WorkerHealth
from broker.jobs import Job
from broker.peer import Peer
from broker.protocol import Capability, Failed


class WorkerEntry:
    remote = False  # a peer realm's pool (broker.federation), picked after every local worker

    def __init__(
        self,
        worker_id: str,
        peer: Peer,
        address: str,
        capabilities: list[Capability],
        slots: int,
        name: str,
        version: str,
        config: BrokerConfig,
    ) -> None:
        self.id = worker_id
        self.peer = peer
        self.address = address
        self.name = name or worker_id
        self.version = version
        self.slots = slots
        self.models: dict[str, frozenset[str]] = {c.intent: frozenset(c.models) for c in capabilities}
        # Per-intent bounds of a worker serving several intents (an image model
        # beside a batching chat model); None when only the worker's slots count.
        caps = {c.intent: c.slots for c in capabilities if c.slots is not None and c.slots < slots}
        self.intent_slots: dict[str, int] | None = caps or None
        # Intents this worker serves to its own address only: those its capability
        # declares owner_only, and those the realm says must be (email).
        self.owner_only = frozenset(
            c.intent for c in capabilities if c.owner_only or c.intent in config.owner_only_intents
        )
        self.capabilities = capabilities
        self.running: dict[str, Job] = {}
        # guids taken back (timeout, cancel) that the worker has not yet let go of:
        # they keep their slot booked. guid -> the timer that frees it anyway.
        self.letting_go: dict[str, asyncio.TimerHandle] = {}
        self.health = WorkerHealth(config)
        self.connected_at = time.time()
        self.ping_sent: dict[str, float] = {}  # ping nonce -> perf_counter when sent
        self.cap: int | None = None  # broker.trust: 0 paused or in maintenance, fewer slots while untrusted
        self.draining = False  # the worker is shutting down: no new work

    def serves(self, intent: str, model: str | None) -> bool:
        models = self.models.get(intent)
        if models is None:
            return False
        return model is None or model in models

    def accepts(self, job: Job) -> bool:
        """Whether ``job`` may go to this worker at all (asked of remote ones only)."""
        return True

    def serves_user(self, intent: str, user: str | None) -> bool:
        """False for an owner-only intent asked by anyone but the worker's own address."""
        return intent not in self.owner_only or (user is not None and user.lower() == self.address.lower())

    def hands_back(self, failed: Failed) -> bool:
        """A draining worker giving an intent back: it counts against nobody.
        Only after `drain`, so a worker cannot dodge blame while taking new work."""
        return self.draining and failed.retryable and failed.code == "worker_stopping"

    def free_for(self, intent: str) -> int:
        """Free slots for a job of ``intent``."""
        free = self.free
        if self.intent_slots is None or free <= 0:
            return free
        cap = self.intent_slots.get(intent)
        if cap is None:
            return free
        return min(free, cap - sum(1 for job in self.running.values() if job.intent == intent))

    @property
    def free(self) -> int:
        # Asked several times per dispatch: kept to attribute reads.
        if self.draining:
            return 0
        capacity = self.health.capacity(self.slots)
        cap = self.cap
        if cap is not None and cap < capacity:
            capacity = cap
        return capacity - len(self.running) - len(self.letting_go)

    def to_dict(self, private: bool = False) -> dict[str, object]:
        """The worker as /v1/workers shows it; ``private`` adds what only a
        sysop sees: its IP address and the guids it runs (users' intents)."""
        row: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "address": self.address,
            "version": self.version,
            "capabilities": [
                {
                    "intent": c.intent,
                    "models": list(c.models),
                    "params": c.params,
                    "info": c.info,
                    "slots": c.slots,
                    "owner_only": c.intent in self.owner_only,
                }
                for c in self.capabilities
            ],
            "slots": self.slots,
            "running": len(self.running),
            "letting_go": len(self.letting_go),
            "draining": self.draining,
            "connected_for_s": round(time.time() - self.connected_at, 3),
            "health": self.health.to_dict(),
        }
        if private:
            row["remote"] = self.peer.remote
            row["running_guids"] = list(self.running)
        return row


class WorkerRegistry:
    def __init__(self, config: BrokerConfig, broker_id: str = "") -> None:
        """``broker_id``: this broker's id in a realm of brokers (worker ids
        then start with it, so they are unique realm-wide)."""
        self._cfg = config
        self._prefix = f"{broker_id}." if broker_id else ""
        self._workers: dict[str, WorkerEntry] = {}
        self._ids = itertools.count(1)
        self._intents: set[str] | None = None

    def add(
        self,
        peer: Peer,
        address: str,
        capabilities: list[Capability],
        slots: int,
        name: str = "",
        version: str = "",
    ) -> WorkerEntry:
        entry = WorkerEntry(self.new_id("w", address), peer, address, capabilities, slots, name, version, self._cfg)
        return self.join(entry)

    def new_id(self, kind: str, address: str) -> str:
        return f"{self._prefix}{kind}{next(self._ids)}-{address[2:8].lower()}"

    def join(self, entry: WorkerEntry) -> WorkerEntry:
        """Add an entry built elsewhere (a peer realm's, broker.federation)."""
        self._workers[entry.id] = entry
        self._intents = None
        return entry

    def capabilities_changed(self) -> None:
        """A connected entry's capabilities changed (a peer realm's pool)."""
        self._intents = None

    def remove(self, worker_id: str) -> WorkerEntry | None:
        self._intents = None
        return self._workers.pop(worker_id, None)

    def __iter__(self) -> Iterator[WorkerEntry]:
        return iter(list(self._workers.values()))

    def __len__(self) -> int:
        return len(self._workers)

    def intents(self) -> set[str]:
        """Every intent some connected worker serves (cached: asked on every submit)."""
        if self._intents is None:
            self._intents = {intent for w in self._workers.values() for intent in w.models}
        return self._intents

    def can_serve(self, intent: str, model: str | None, user: str | None = None) -> bool:
        """Some connected worker outside quarantine serves this intent (and model) to ``user``."""
        for w in self._workers.values():
            if w.health.state != QUARANTINED and w.serves(intent, model) and w.serves_user(intent, user):
                return True
        return False

    def owner_only(self, intent: str) -> bool:
        """Whether ``intent`` is served to its workers' own addresses only."""
        return intent in self._cfg.owner_only_intents or any(intent in w.owner_only for w in self._workers.values())

    def pick(self, job: Job) -> WorkerEntry | None:
        """The best worker with a free slot for ``job``, or None.

        Workers that already failed this job come last, then the healthiest,
        then the least loaded (running / slots), then the fastest to answer.
        """
        best: WorkerEntry | None = None
        best_key: tuple[object, ...] = ()
        intent, model, guid, tried = job.intent, job.model, job.guid, job.tried
        for w in self._workers.values():
            models = w.models.get(intent)
            if models is None or (model is not None and model not in models):
                continue
            if (
                w.free_for(intent) <= 0
                or guid in w.letting_go
                or not w.serves_user(intent, job.user)
                or (w.remote and not w.accepts(job))
            ):
                continue
            health = w.health
            key = (w.id in tried, health.rank(), len(w.running) / w.slots, health.latency_ms or 0.0)
            if best is None or key < best_key:
                best, best_key = w, key
        return best

    def has_free(self, intent: str) -> bool:
        for w in self._workers.values():
            if intent in w.models and w.free_for(intent) > 0:
                return True
        return False

    def snapshot(self) -> list[dict[str, object]]:
        return [w.to_dict() for w in self._workers.values()]

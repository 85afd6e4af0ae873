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

    def hands_back(self, failed: Failed) -> bool:
        """A draining worker giving an intent back: it counts against nobody.
        Only after `drain`, so a worker cannot dodge blame while taking new work."""
        return self.draining and failed.retryable and failed.code == "worker_stopping"

    @property
    def free(self) -> int:
        if self.draining:
            return 0
        capacity = self.health.capacity(self.slots)
        if self.cap is not None:
            capacity = min(capacity, self.cap)
        return capacity - len(self.running) - len(self.letting_go)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "address": self.address,
            "version": self.version,
            "remote": self.peer.remote,
            "capabilities": [
                {"intent": c.intent, "models": list(c.models), "params": c.params, "info": c.info}
                for c in self.capabilities
            ],
            "slots": self.slots,
            "running": len(self.running),
            "letting_go": len(self.letting_go),
            "draining": self.draining,
            "running_guids": list(self.running),
            "connected_for_s": round(time.time() - self.connected_at, 3),
            "health": self.health.to_dict(),
        }


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
        worker_id = f"{self._prefix}w{next(self._ids)}-{address[2:8].lower()}"
        entry = WorkerEntry(worker_id, peer, address, capabilities, slots, name, version, self._cfg)
        self._workers[worker_id] = entry
        self._intents = None
        return entry

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

    def can_serve(self, intent: str, model: str | None) -> bool:
        """Some connected worker outside quarantine serves this intent (and model)."""
        for w in self._workers.values():
            if w.health.state != QUARANTINED and w.serves(intent, model):
                return True
        return False

    def pick(self, job: Job) -> WorkerEntry | None:
        """The best worker with a free slot for ``job``, or None.

        Workers that already failed this job come last, then the healthiest,
        then the least loaded (running / slots), then the fastest to answer.
        """
        best: WorkerEntry | None = None
        best_key: tuple[object, ...] = ()
        for w in self._workers.values():
            if w.free <= 0 or not w.serves(job.intent, job.model) or job.guid in w.letting_go:
                continue
            key = (
                w.id in job.tried,
                w.health.rank(),
                len(w.running) / w.slots,
                w.health.latency_ms or 0.0,
            )
            if best is None or key < best_key:
                best, best_key = w, key
        return best

    def has_free(self, intent: str) -> bool:
        for w in self._workers.values():
            if intent in w.models and w.free > 0:
                return True
        return False

    def snapshot(self) -> list[dict[str, object]]:
        return [w.to_dict() for w in self._workers.values()]

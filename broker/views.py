"""What the broker shows of itself: /healthz, /v1/stats, /v1/workers, the
subscription topics and the gauges of /metrics, all read from the live parts.

Shapes are documented in docs/protocol.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broker.billing import Billing
from broker.config import BrokerConfig
from broker.health import HEALTHY, PROBING, QUARANTINED

if TYPE_CHECKING:
    from broker.dispatch import Dispatcher
    from broker.peer import Peers
    from broker.queue import JobQueue
    from broker.registry import WorkerRegistry
    from broker.subscriptions import Subscriptions

LIVE_LISTED = 200  # intents listed in the `intents` topic's `live`


class RealmViews:
    def __init__(
        self,
        config: BrokerConfig,
        registry: WorkerRegistry,
        queue: JobQueue,
        dispatcher: Dispatcher,
        peers: Peers,
        subs: Subscriptions,
        billing: Billing | None,
        restored: int,
    ) -> None:
        self._cfg = config
        self._registry = registry
        self._queue = queue
        self._dispatcher = dispatcher
        self._peers = peers
        self._subs = subs
        self._billing = billing
        self._restored = restored
        self._started = time.monotonic()

    def topics(self) -> dict[str, Callable[[], dict[str, Any]]]:
        """The snapshot of each subscription topic that has one."""
        return {"stats": self.stats, "workers": self.workers, "queue": self.queue, "intents": self.live_intents}

    def _uptime(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "realm": self._cfg.realm,
            "uptime_s": self._uptime(),
            "workers": len(self._registry),
            "clients": len(self._peers.clients),
            "queued": len(self._queue),
        }

    def _slots(self) -> tuple[int, int]:
        busy = total = 0
        for w in self._registry:
            busy += len(w.running)
            total += w.slots
        return busy, total

    def workers_by_state(self) -> dict[str, int]:
        counts = {HEALTHY: 0, QUARANTINED: 0, PROBING: 0}
        for w in self._registry:
            counts[w.health.state] += 1
        return counts

    def _queue_depth(self) -> dict[str, int]:
        return {i: self._queue.depth(i) for i in self._queue.intents()}

    def stats(self) -> dict[str, Any]:
        busy, total = self._slots()
        return {
            "realm": self._cfg.realm,
            "uptime_s": self._uptime(),
            "clients": len(self._peers.clients),
            "subscribers": len(self._subs),
            "workers": len(self._registry),
            "workers_by_state": self.workers_by_state(),
            "slots_busy": busy,
            "slots_total": total,
            "queued": len(self._queue),
            "running": busy,
            "queue_depth": self._queue_depth(),
            "intents": dict(self._dispatcher.counters),
            "restored": self._restored,
        }

    def workers(self) -> dict[str, Any]:
        workers = self._registry.snapshot()
        if self._billing is not None:
            earned = self._billing.earnings([str(w["address"]) for w in workers])
            for worker in workers:
                worker["earnings"] = earned[str(worker["address"])]
        return {"workers": workers}

    def queue(self) -> dict[str, Any]:
        return {"intents": self._queue.snapshot(), "total": len(self._queue)}

    def live_intents(self) -> dict[str, Any]:
        now = time.monotonic()
        jobs = self._dispatcher.jobs
        live = []
        for job in list(jobs.values())[:LIVE_LISTED]:
            live.append(
                {
                    "guid": job.guid,
                    "user": job.user,
                    "intent": job.intent,
                    "state": "running" if job.worker is not None else "queued",
                    "worker": job.worker.id if job.worker is not None else None,
                    "attempts": job.attempts,
                    "age_s": round(now - job.queued_at, 3),
                }
            )
        return {"live": live, "live_total": len(jobs)}

    def live(self) -> dict[str, Any]:
        """The gauges /metrics reads at each scrape."""
        busy, total = self._slots()
        return {
            "queue_depth": self._queue_depth(),
            "workers_by_state": self.workers_by_state(),
            "slots_busy": busy,
            "slots_total": total,
            "clients": len(self._peers.clients),
            "subscribers": len(self._subs),
            "tokens": self._dispatcher.counters["tokens"],
        }

    def totals_now(self) -> dict[str, Any]:
        """What /v1/totals adds from the live realm to the journal's totals."""
        return {
            "connected_users": self._peers.users(),
            "workers": {"connected": len(self._registry), "by_state": self.workers_by_state()},
            "tokens_streamed": self._dispatcher.counters["tokens"],
        }

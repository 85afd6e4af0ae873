"""What the broker shows of the realm: /healthz, /v1/stats, /v1/workers,
/v1/brokers, the subscription topics and the gauges of /metrics.

Every figure is the realm's: this broker's live parts, plus what the other
brokers of a shared realm last said of themselves (broker.realm.Others; a
lone broker has none). Shapes are documented in docs/protocol.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from broker.billing import Billing
from broker.config import BrokerConfig
from broker.health import HEALTHY, PROBING, QUARANTINED
from broker.realm import Others

if TYPE_CHECKING:
    from broker.dispatch import Dispatcher
    from broker.peer import Peers
    from broker.queue import JobQueue
    from broker.registry import WorkerRegistry
    from broker.subscriptions import Subscriptions

LIVE_LISTED = 200  # intents listed in the `intents` topic's `live`
PRIVATE = frozenset(("remote", "running_guids", "trust"))  # a worker's, for sysops only


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
        others: Others,
        broker_id: str = "",
    ) -> None:
        self._cfg = config
        self._registry = registry
        self._queue = queue
        self._dispatcher = dispatcher
        self._peers = peers
        self._subs = subs
        self._billing = billing
        self._restored = restored
        self._others = others
        self._id = broker_id
        self.url = ""  # set once the broker listens
        self._started = time.monotonic()
        self._cpu = (time.monotonic(), time.process_time())

    def topics(self) -> dict[str, Callable[[], dict[str, Any]]]:
        """The snapshot of each subscription topic that has one."""
        return {"stats": self.stats, "workers": self.workers, "queue": self.queue, "intents": self.live_intents}

    def _uptime(self) -> float:
        return round(time.monotonic() - self._started, 3)

    # --- this broker, as the others see it -----------------------------------

    def describe(self) -> dict[str, Any]:
        """This broker: its sockets, its workers' load, its counters, its CPU
        since the last call (the share of one core), its live intents."""
        busy, total = _slots(self._registry.snapshot())
        then, cpu_then = self._cpu
        now, cpu = time.monotonic(), time.process_time()
        self._cpu = (now, cpu)
        return {
            "id": self._id or "local",
            "url": self.url,
            "uptime_s": self._uptime(),
            "clients": len(self._peers.clients),
            "users": self._peers.users(),
            "subscribers": len(self._subs),
            "workers": len(self._registry),
            "slots_busy": busy,
            "slots_total": total,
            "cpu": round((cpu - cpu_then) / max(now - then, 1e-6), 4),
            "intents": dict(self._dispatcher.counters),
            "live": self._live_here(),
        }

    def brokers(self) -> dict[str, Any]:
        """Every broker of the realm (GET /v1/brokers; `mtor broker status`)."""
        here = self.describe()
        here["this"] = True
        rows = [here, *({**b, "this": False} for b in self._others.others())]
        for row in rows:
            row.pop("live", None)
        return {"realm": self._cfg.realm, "brokers": rows}

    # --- the realm -----------------------------------------------------------

    def _workers(self) -> list[dict[str, Any]]:
        here = self._registry.snapshot()
        if self._id:
            for w in here:
                w["broker"] = self._id
        return here + [{k: v for k, v in w.items() if k not in PRIVATE} for w in self._others.remote_workers()]

    def _sum(self, key: str, here: int) -> int:
        return here + sum(int(b.get(key, 0)) for b in self._others.others())

    def _clients(self) -> int:
        return self._sum("clients", len(self._peers.clients))

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "realm": self._cfg.realm,
            "uptime_s": self._uptime(),
            "workers": len(self._workers()),
            "clients": self._clients(),
            "queued": len(self._queue),
            "brokers": 1 + len(self._others.others()),
        }

    def workers_by_state(self, workers: list[dict[str, Any]] | None = None) -> dict[str, int]:
        counts = {HEALTHY: 0, QUARANTINED: 0, PROBING: 0}
        for w in self._workers() if workers is None else workers:
            state = (w.get("health") or {}).get("state", HEALTHY)
            counts[state] = counts.get(state, 0) + 1
        return counts

    def _queue_depth(self) -> dict[str, int]:
        return {i: self._queue.depth(i) for i in self._queue.intents()}

    def stats(self) -> dict[str, Any]:
        workers = self._workers()
        busy, total = _slots(workers)
        counters = dict(self._dispatcher.counters)
        for other in self._others.others():
            for key, n in (other.get("intents") or {}).items():
                counters[key] = counters.get(key, 0) + int(n)
        return {
            "realm": self._cfg.realm,
            "uptime_s": self._uptime(),
            "brokers": 1 + len(self._others.others()),
            "clients": self._clients(),
            "subscribers": self._sum("subscribers", len(self._subs)),
            "workers": len(workers),
            "workers_by_state": self.workers_by_state(workers),
            "slots_busy": busy,
            "slots_total": total,
            "queued": len(self._queue),
            "running": busy,
            "queue_depth": self._queue_depth(),
            "intents": counters,
            "restored": self._restored,
            **({"ledger": self._billing.status()} if self._billing is not None else {}),
        }

    def workers(self) -> dict[str, Any]:
        workers = self._workers()
        if self._billing is not None:
            earned = self._billing.earnings([str(w["address"]) for w in workers])
            for worker in workers:
                worker["earnings"] = earned[str(worker["address"])]
        return {"workers": workers}

    def queue(self) -> dict[str, Any]:
        return {"intents": self._queue.snapshot(), "total": len(self._queue)}

    def _live_here(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        live = []
        for job in list(self._dispatcher.jobs.values())[:LIVE_LISTED]:
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
        return live

    def live_intents(self) -> dict[str, Any]:
        # An intent is listed by its client's broker (queued, as far as it
        # knows) and by the broker it runs on: the running entry wins.
        merged: dict[str, dict[str, Any]] = {}
        for row in _chain(self._live_here(), *(b.get("live") or () for b in self._others.others())):
            if row["guid"] not in merged or row["state"] == "running":
                merged[row["guid"]] = row
        return {"live": list(merged.values())[:LIVE_LISTED], "live_total": max(len(merged), len(self._dispatcher.jobs))}

    def live(self) -> dict[str, Any]:
        """The gauges /metrics reads at each scrape (the realm's; counters are this broker's)."""
        workers = self._workers()
        busy, total = _slots(workers)
        return {
            "queue_depth": self._queue_depth(),
            "workers_by_state": self.workers_by_state(workers),
            "slots_busy": busy,
            "slots_total": total,
            "clients": self._clients(),
            "subscribers": self._sum("subscribers", len(self._subs)),
            "brokers": 1 + len(self._others.others()),
            "tokens": self._dispatcher.counters["tokens"],
            "ledger": self._billing.status() if self._billing is not None else None,
        }

    def totals_now(self) -> dict[str, Any]:
        """What /v1/totals adds from the live realm to the journal's totals."""
        workers = self._workers()
        return {
            "connected_users": self._sum("users", self._peers.users()),
            "workers": {"connected": len(workers), "by_state": self.workers_by_state(workers)},
            "tokens_streamed": self._dispatcher.counters["tokens"]
            + sum(int((b.get("intents") or {}).get("tokens", 0)) for b in self._others.others()),
        }


def _slots(workers: list[dict[str, Any]]) -> tuple[int, int]:
    busy = sum(int(w.get("running", 0)) for w in workers)
    total = sum(int(w.get("slots", 0)) for w in workers)
    return busy, total


def _chain(*lists: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for rows in lists:
        yield from rows

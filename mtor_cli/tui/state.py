"""What the TUI knows about the realm, folded from the broker's pushes.

The shapes are the broker's ``stats{topic, data}`` pushes (docs/protocol.md):
``workers`` and ``queue`` are whole snapshots, ``stats`` carries counters,
``intents`` and ``ledger`` carry the events since the previous push.

Applying a push never touches a widget. Snapshots are only stored (a burst of
them costs one parse, at repaint time); events are folded at once because
each one counts. What changed is recorded in ``dirty`` and the app repaints
only those panes, a few times a second at most.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.protocol import Broadcast, Stats

from .feed import ConnectionStatus, FeedEvent

RECENT_INTENTS = 200
SERIES_SECONDS = 180  # the sparklines span the last three minutes
FINISHED = ("done", "failed", "cancelled")


@dataclass
class WorkerRow:
    id: str
    address: str = ""
    name: str = ""
    intents: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    health: float | None = None  # share of jobs that did not fail, 0..1
    load: int = 0
    slots: int = 0
    state: str = ""
    ping_ms: float | None = None
    earnings: int | None = None  # base units of $9000; None until the ledger reports it


@dataclass
class IntentRow:
    guid: str
    intent: str = ""
    status: str = ""
    worker: str = ""
    user: str = ""
    queued_ts: float | None = None
    elapsed_s: float | None = None
    cost: int | None = None


class Series:
    """Per-second buckets over the last ``SERIES_SECONDS`` seconds, for a sparkline.

    ``total`` buckets sum what is added (a count per second); ``mean`` buckets
    average it (a latency per second). Seconds with nothing added read as 0.
    """

    def __init__(self, kind: str = "total") -> None:
        self._mean = kind == "mean"
        self._buckets: dict[int, list[float]] = {}

    def add(self, second: int, value: float) -> None:
        bucket = self._buckets.setdefault(second, [0.0, 0])
        bucket[0] += value
        bucket[1] += 1
        if len(self._buckets) > SERIES_SECONDS * 2:
            for old in sorted(self._buckets)[:SERIES_SECONDS]:
                del self._buckets[old]

    def _value(self, bucket: list[float] | None) -> float:
        if bucket is None:
            return 0.0
        return bucket[0] / bucket[1] if self._mean else bucket[0]

    def values(self, now: int) -> list[float]:
        """One value per second, oldest first, ending at ``now``."""
        return [self._value(self._buckets.get(s)) for s in range(now - SERIES_SECONDS + 1, now + 1)]

    def recent(self, now: int, seconds: int = 10) -> float | None:
        """The per-second value over the last ``seconds`` (None when nothing arrived)."""
        buckets = [self._buckets[s] for s in range(now - seconds + 1, now + 1) if s in self._buckets]
        if not buckets:
            return None
        if self._mean:
            return sum(b[0] for b in buckets) / sum(b[1] for b in buckets)
        return sum(b[0] for b in buckets) / seconds


class RealmState:
    """The folded realm view plus what changed since the last repaint."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.connection = ConnectionStatus("connecting")
        self.workers: dict[str, WorkerRow] = {}
        self._workers_raw: list[Any] | None = None
        self._parsed_from: dict[str, Mapping[str, Any]] = {}
        self.queue: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.throughput = Series("total")
        self.latency = Series("mean")
        self._finished_total: int | None = None
        self.intents: OrderedDict[str, IntentRow] = OrderedDict()
        self.changed_intents: set[str] = set()
        self.evicted_intents: set[str] = set()
        self.balance: int | None = None
        self.spent: int | None = None
        self.broadcast: str = ""
        self.peers: list[dict[str, Any]] = []  # peer realms, as /v1/federation shows them
        self.dirty: set[str] = set()
        self.updates_applied = 0

    @property
    def me(self) -> str | None:
        return self.connection.address

    # --- folding ---------------------------------------------------------

    def apply(self, event: FeedEvent) -> None:
        self.updates_applied += 1
        if isinstance(event, ConnectionStatus):
            self.connection = event
            self.dirty.add("connection")
        elif isinstance(event, Broadcast):
            self.broadcast = f"{event.sender}: {event.message}"
            self.dirty.add("connection")
        elif isinstance(event, Stats):
            handler = _TOPIC_HANDLERS.get(event.topic)
            if handler is not None:
                handler(self, event.data)

    def _apply_federation(self, data: Mapping[str, Any]) -> None:
        peers = data.get("peers")
        if isinstance(peers, list):
            self.peers = [p for p in peers if isinstance(p, dict)]
            self.dirty.add("federation")

    def _apply_workers(self, data: Mapping[str, Any]) -> None:
        workers = data.get("workers")
        if isinstance(workers, list):
            self._workers_raw = workers
            self.dirty.add("workers")

    def _apply_queue(self, data: Mapping[str, Any]) -> None:
        intents = data.get("intents")
        if isinstance(intents, Mapping):
            self.queue = {
                str(name): int(q.get("depth", 0)) for name, q in intents.items() if isinstance(q, Mapping)
            }
            self.dirty.add("queue")

    def _apply_stats(self, data: Mapping[str, Any]) -> None:
        counters = data.get("intents")
        if isinstance(counters, Mapping):
            finished = sum(int(counters.get(k, 0)) for k in ("completed", "failed"))
            # The first push is a baseline; a smaller total means the broker restarted.
            if self._finished_total is not None and finished >= self._finished_total:
                self.throughput.add(int(self.clock()), finished - self._finished_total)
            self._finished_total = finished
        self.totals = {
            "workers": int(data.get("workers", 0)),
            "slots_busy": int(data.get("slots_busy", 0)),
            "slots_total": int(data.get("slots_total", 0)),
            "queued": int(data.get("queued", 0)),
            "completed": int(counters.get("completed", 0)) if isinstance(counters, Mapping) else 0,
            "failed": int(counters.get("failed", 0)) if isinstance(counters, Mapping) else 0,
        }
        self.dirty.add("stats")

    def _apply_intents(self, data: Mapping[str, Any]) -> None:
        for item in data.get("live", ()):
            if isinstance(item, Mapping) and item.get("guid") not in self.intents:
                self._intent_event(item)
        for item in data.get("events", ()):
            if isinstance(item, Mapping):
                self._intent_event(item)
        while len(self.intents) > RECENT_INTENTS:
            guid, _ = self.intents.popitem(last=False)
            self.changed_intents.discard(guid)
            self.evicted_intents.add(guid)
        self.dirty.add("intents")

    def _intent_event(self, item: Mapping[str, Any]) -> None:
        guid = item.get("guid")
        if not isinstance(guid, str):
            return
        row = self.intents.get(guid)
        if row is None:
            row = self.intents[guid] = IntentRow(guid=guid)
        row.intent = str(item.get("intent") or row.intent)
        row.status = str(item.get("state") or row.status)
        row.worker = str(item.get("worker") or row.worker)
        row.user = str(item.get("user") or row.user)
        ts = item.get("ts")
        if isinstance(ts, (int, float)):
            if row.status == "queued" and row.queued_ts is None:
                row.queued_ts = float(ts)
            elif row.status in FINISHED and row.queued_ts is not None:
                row.elapsed_s = max(0.0, float(ts) - row.queued_ts)
                if row.status == "done":
                    self.latency.add(int(self.clock()), row.elapsed_s * 1000)
                    self.dirty.add("stats")
        self.changed_intents.add(guid)

    def _apply_ledger(self, data: Mapping[str, Any]) -> None:
        if self.spent is None and self.me is not None:
            self.spent = 0
        if isinstance(data.get("balance"), int):
            self.balance = data["balance"]
        for item in data.get("events", ()):
            if not isinstance(item, Mapping) or item.get("kind") != "capture":
                continue
            amount = int(item.get("amount", 0))
            row = self.intents.get(str(item.get("guid")))
            if row is not None:
                row.cost = amount
                self.changed_intents.add(row.guid)
                self.dirty.add("intents")
            if self.me is not None and item.get("user") == self.me:
                self.spent = (self.spent or 0) + amount
        self.dirty.add("ledger")

    # --- draining --------------------------------------------------------

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def take_workers(self) -> dict[str, WorkerRow]:
        """The workers as of the latest snapshot (parsed once, however many arrived).

        A worker whose pushed dict is equal to the one its row was parsed from
        keeps the same WorkerRow object, so panes can skip it by identity.
        """
        if self._workers_raw is not None:
            workers: dict[str, WorkerRow] = {}
            parsed_from: dict[str, Mapping[str, Any]] = {}
            for item in self._workers_raw:
                if not isinstance(item, Mapping):
                    continue
                worker_id = str(item.get("id", "?"))
                row = self.workers.get(worker_id)
                if row is None or self._parsed_from.get(worker_id) != item:
                    row = _worker(item)
                workers[worker_id] = row
                parsed_from[worker_id] = item
            self.workers, self._parsed_from = workers, parsed_from
            self._workers_raw = None
        return self.workers

    def take_intent_changes(self) -> tuple[set[str], set[str]]:
        """(changed or new guids, guids that fell off the recent list) since the last call."""
        changes = (self.changed_intents, self.evicted_intents)
        self.changed_intents = set()
        self.evicted_intents = set()
        return changes


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, Iterable) and not isinstance(value, str) else []


def _worker(item: Mapping[str, Any]) -> WorkerRow:
    intents: list[str] = []
    models: list[str] = []
    for capability in item.get("capabilities", ()):
        if isinstance(capability, Mapping):
            intents.append(str(capability.get("intent", "")))
            models.extend(_strings(capability.get("models", ())))
    raw_health = item.get("health")
    health: Mapping[str, Any] = raw_health if isinstance(raw_health, Mapping) else {}
    slots = int(item.get("slots", 0))
    load = int(item.get("running", 0))
    state = str(health.get("state", ""))
    if state == "healthy":
        state = "busy" if slots and load >= slots else "working" if load else "ready"
    failure_rate = health.get("failure_rate")
    return WorkerRow(
        id=str(item.get("id", "?")),
        address=str(item.get("address", "")),
        name=str(item.get("name", "")),
        intents=list(dict.fromkeys(i for i in intents if i)),
        models=list(dict.fromkeys(models)),
        health=None if failure_rate is None else 1.0 - float(failure_rate),
        load=load,
        slots=slots,
        state=state,
        ping_ms=health.get("latency_ms"),
        earnings=item.get("earnings") if isinstance(item.get("earnings"), int) else None,
    )


_TOPIC_HANDLERS: dict[str, Callable[[RealmState, Mapping[str, Any]], None]] = {
    "workers": RealmState._apply_workers,
    "queue": RealmState._apply_queue,
    "stats": RealmState._apply_stats,
    "intents": RealmState._apply_intents,
    "ledger": RealmState._apply_ledger,
    "federation": RealmState._apply_federation,
}

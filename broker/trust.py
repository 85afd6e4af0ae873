"""Worker trust: maintenance for workers that drop work, limits for new ones.

Health (broker/health.py) quarantines a flaky connection for a while and
probes it again; trust is about the worker's address, across reconnects and
restarts. A worker whose recent jobs were aborted (a retryable `failed`, a
timeout, or a connection that took work and vanished without finishing any)
``maintenance_after`` times among its last :data:`WINDOW`, or that returns a
result implausibly fast, goes into
maintenance: no new work until a sysop resumes it, and its operator is told
why (`error{code: "maintenance"}` on its socket, which the worker logs). Its
jobs go to other workers as usual. A worker with fewer than
``trust_after_jobs`` completed jobs gets at most ``untrusted_slots`` at once.

Spot checks: with ``spot_check_rate`` > 0, that share of greedy chat results
(temperature 0: deterministic) is run again on another, trusted worker with
a free slot, and the two texts compared; a worker whose answer differs goes
into maintenance. The check's slot is booked the way a job being let go is
(``WorkerEntry.letting_go``), so the dispatcher never overbooks the checker
and drops the check's frames quietly; the user never sees it.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.accounts import AccountStore, TrustRecord
from broker.background import Background
from broker.config import BrokerConfig
from broker.protocol import Error, Failed, Work, WorkResult

if TYPE_CHECKING:
    from broker.jobs import Job
    from broker.registry import WorkerEntry, WorkerRegistry
    from broker.subscriptions import Subscriptions

WINDOW = 20
RESUME_HINT = "fix the worker, then ask a sysop to run `mtor sysop worker resume ID`"


@dataclass
class _Spot:
    """A spot check under way: whose answer is being checked, and what it said."""

    worker_id: str
    address: str
    text: str
    guid: str  # the user's intent


class _Watch:
    """What trust tracks about one connected worker."""

    def __init__(self, record: TrustRecord, recent: deque[bool]) -> None:
        self.record = record
        self.recent = recent  # the address's last WINDOW outcomes (True: aborted), across reconnects
        self.failures_seen = 0  # health.jobs_failed already counted
        self.paused = False
        self.dirty = False  # counters changed since the last save (saved by sweep())


class WorkerTrust:
    def __init__(
        self,
        config: BrokerConfig,
        store: AccountStore,
        registry: WorkerRegistry,
        subs: Subscriptions,
        pump: Callable[[], None],
        background: Background,
    ) -> None:
        """``pump`` hands queued work to free slots (the dispatcher's pump_all):
        called when a worker may take work again. Trust records are saved in
        the ``background``."""
        self._cfg = config
        self._store = store
        self._background = background
        self._registry = registry
        self._subs = subs
        self._pump = pump
        self._watch: dict[str, _Watch] = {}  # worker id -> watch
        self._recent: dict[str, deque[bool]] = {}  # address -> its last WINDOW outcomes
        self._spots: dict[str, _Spot] = {}  # spot-check guid -> the answer it checks
        self._rng = random.Random()
        self.spot_checks = {"passed": 0, "failed": 0}

    async def record_of(self, address: str) -> TrustRecord:
        """The address's trust record (asked before it joins, so its limits hold from the start)."""
        return await self._store.trust(address)

    def joined(self, entry: WorkerEntry, record: TrustRecord) -> None:
        recent = self._recent.setdefault(entry.address.lower(), deque(maxlen=WINDOW))
        watch = self._watch[entry.id] = _Watch(record, recent)
        self._apply(entry, watch)
        if watch.record.maintenance:
            # After the `welcome` that is about to go out: a worker treats an error
            # before it as a refused registration.
            asyncio.get_running_loop().call_soon(self._tell, entry, watch.record.maintenance)

    def left(self, entry: WorkerEntry) -> None:
        """The worker disconnected. Its running jobs go elsewhere without blame:
        a restart (kill -9 included) or a lost connection is not misbehaviour,
        however many slots were busy, and a busy broker (or its network) can
        cause one as easily as the worker. Only a connection that took work and
        vanished without finishing any counts, once: a worker doing that again
        and again (the pattern across reconnects) goes into maintenance, while
        one that served and then restarted is never blamed for it."""
        for guid in entry.letting_go:
            self._spots.pop(guid, None)  # checks it was running: no verdict
        watch = self._watch.pop(entry.id, None)
        if watch is None:
            return
        self._count_timeouts(entry, watch)
        if entry.running and not entry.draining and entry.health.jobs_ok == 0:
            self._outcome(entry, watch, aborted=True)
        self._background.run("trust-save", self._store.save_trust(watch.record))

    def before(self, entry: WorkerEntry, msg: object) -> None:
        """See a worker's answer before the dispatcher acts on it."""
        watch = self._watch.get(entry.id)
        if watch is None or not isinstance(msg, (WorkResult, Failed)):
            return
        spot = self._spots.pop(msg.guid, None) if msg.guid in entry.letting_go else None
        if spot is not None:
            if isinstance(msg, WorkResult):
                self._judge(spot, entry, msg.text or "")
            return
        job = entry.running.get(msg.guid)
        if job is None:
            return
        if isinstance(msg, Failed):
            if msg.retryable and not entry.hands_back(msg):
                watch.failures_seen += 1  # health counts it too; don't count it twice
                self._outcome(entry, watch, aborted=True)
            return
        cfg = self._cfg
        run_s = max(time.monotonic() - job.started_at, 1e-6)
        tokens = msg.usage.completion_tokens or 0
        if cfg.max_tokens_per_s and tokens / run_s > cfg.max_tokens_per_s:
            self._maintenance(
                entry, watch,
                f"implausible speed: {tokens} tokens in {run_s * 1000:.1f} ms (limit {cfg.max_tokens_per_s:g} tokens/s)",
            )
        watch.record.completed += 1
        self._outcome(entry, watch, aborted=False)
        if cfg.spot_check_rate and self._rng.random() < cfg.spot_check_rate:
            self._spot_check(entry, job, msg)

    async def sweep(self) -> None:
        """Count timeouts (health records them) and save changed counters, every
        second: one write a second, not one per job (a failed save is tried
        again at the next sweep)."""
        for entry in self._registry:
            watch = self._watch.get(entry.id)
            if watch is not None:
                self._count_timeouts(entry, watch)
                if watch.dirty:
                    watch.dirty = False
                    try:
                        await self._store.save_trust(watch.record)
                    except BaseException:
                        watch.dirty = True
                        raise

    def _count_timeouts(self, entry: WorkerEntry, watch: _Watch) -> None:
        new = entry.health.jobs_failed - watch.failures_seen
        for _ in range(new):
            watch.failures_seen += 1
            self._outcome(entry, watch, aborted=True)

    def _outcome(self, entry: WorkerEntry, watch: _Watch, aborted: bool) -> None:
        watch.recent.append(aborted)
        watch.dirty = True
        if not aborted:
            # Only the step to trusted can change the worker's cap (once per address).
            if watch.record.completed == self._cfg.trust_after_jobs:
                self._apply(entry, watch)
            return
        watch.record.aborted += 1
        limit = self._cfg.maintenance_after
        bad = sum(watch.recent)
        if limit and bad >= limit and not watch.record.maintenance:
            self._maintenance(entry, watch, f"{bad} of its last {len(watch.recent)} jobs were aborted or timed out")
        else:
            self._apply(entry, watch)

    def _maintenance(self, entry: WorkerEntry, watch: _Watch, reason: str) -> None:
        watch.record.maintenance = reason
        self._background.run("trust-save", self._store.save_trust(watch.record))
        self._background.run(
            "audit", self._store.audit("realm", "maintenance", entry.address, {"worker": entry.id, "reason": reason}, "ok")
        )
        self._apply(entry, watch)
        self._tell(entry, reason)
        self._subs.changed("workers", "stats")

    @staticmethod
    def _tell(entry: WorkerEntry, reason: str) -> None:
        entry.peer.send(
            Error(
                code="maintenance",
                message=f"worker {entry.id} is in maintenance: {reason}",
                hint=RESUME_HINT,
                detail={"worker": entry.id, "reason": reason},
            )
        )

    def _apply(self, entry: WorkerEntry, watch: _Watch) -> None:
        cfg = self._cfg
        if watch.paused or watch.record.maintenance:
            entry.cap = 0
        elif cfg.untrusted_slots and watch.record.completed < cfg.trust_after_jobs:
            entry.cap = cfg.untrusted_slots
        else:
            entry.cap = None

    # --- spot checks ------------------------------------------------------

    def _spot_check(self, entry: WorkerEntry, job: Job, res: WorkResult) -> None:
        query = job.query
        if job.intent != "chat" or query.params.get("temperature") != 0 or res.text is None:
            return
        model = res.model or query.model
        checker = next(
            (
                w
                for w in self._registry
                if w.id != entry.id
                and w.address.lower() != entry.address.lower()
                and w.free_for(job.intent) > 0
                and w.serves(job.intent, model)
                and self._trusted(w)
            ),
            None,
        )
        if checker is None:
            return
        guid = f"spot-{uuid.uuid4().hex}"
        timeout = self._cfg.timeout_for(job.intent)
        self._spots[guid] = _Spot(entry.id, entry.address, res.text, job.guid)
        checker.letting_go[guid] = asyncio.get_running_loop().call_later(timeout, self._expired, checker, guid)
        checker.peer.send(
            Work(guid=guid, intent=job.intent, prompt=query.prompt, model=model, attachments=query.attachments,
                 params=query.params, stream=False)
        )

    def _trusted(self, entry: WorkerEntry) -> bool:
        watch = self._watch.get(entry.id)
        return (
            watch is not None
            and not watch.paused
            and not watch.record.maintenance
            and watch.record.completed >= self._cfg.trust_after_jobs
        )

    def _judge(self, spot: _Spot, checker: WorkerEntry, text: str) -> None:
        if text == spot.text:
            self.spot_checks["passed"] += 1
            return
        self.spot_checks["failed"] += 1
        reason = f"spot check failed: its answer to intent {spot.guid} differs from trusted worker {checker.id}'s"
        entry = next((w for w in self._registry if w.id == spot.worker_id), None)
        watch = self._watch.get(spot.worker_id)
        if entry is not None and watch is not None:
            self._maintenance(entry, watch, reason)
            return
        self._background.run("trust-save", self._verdict(spot, reason))

    async def _verdict(self, spot: _Spot, reason: str) -> None:
        """The checked worker left meanwhile: it meets the verdict when it returns."""
        record = await self._store.trust(spot.address)
        record.maintenance = reason
        await self._store.save_trust(record)
        await self._store.audit("realm", "maintenance", spot.address, {"worker": spot.worker_id, "reason": reason}, "ok")

    def _expired(self, checker: WorkerEntry, guid: str) -> None:
        """The checker never answered: free its slot; no verdict."""
        self._spots.pop(guid, None)
        if checker.letting_go.pop(guid, None) is not None:
            self._pump()

    # --- sysop controls -------------------------------------------------

    def pause(self, entry: WorkerEntry) -> None:
        watch = self._watch[entry.id]
        watch.paused = True
        self._apply(entry, watch)

    async def resume(self, entry: WorkerEntry) -> None:
        """Lift a pause and maintenance; the worker starts from a clean window."""
        watch = self._watch[entry.id]
        watch.paused = False
        watch.record.maintenance = None
        watch.recent.clear()
        await self._store.save_trust(watch.record)
        self._apply(entry, watch)
        self._pump()

    def view(self, entry: WorkerEntry) -> dict[str, object]:
        watch = self._watch.get(entry.id)
        if watch is None:
            return {}
        cfg = self._cfg
        state = "paused" if watch.paused else "maintenance" if watch.record.maintenance else "active"
        return {
            "state": state,
            "reason": watch.record.maintenance,
            "trusted": watch.record.completed >= cfg.trust_after_jobs,
            "completed": watch.record.completed,
            "aborted": watch.record.aborted,
            "recent_aborted": sum(watch.recent),
            "cap": entry.cap,
        }

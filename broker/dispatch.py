"""The dispatcher: an intent's life from `submit_query` to `result` or `error`.

Credit-based: a worker gets at most as many jobs as it has free slots, and a
job goes to the healthiest, least-loaded capable worker. Every job has a
timeout; a job whose worker fails (retryably), times out or disconnects is
queued again at the front, up to ``max_attempts`` dispatches, then fails with
a clear error and its hold is released.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from broker import journal as J
from broker.billing import Billing, InsufficientFunds, PaymentRefused
from broker.config import BrokerConfig
from broker.deadlines import Deadlines
from broker.intake import Rejected, check_guid, check_limits, normalise
from broker.jobs import Ending, Job
from broker.outbox import Outbox
from broker.peer import Peer, Recipient
from broker.protocol import (
    REQUEST_ERROR_CODES,
    Accepted,
    Cancel,
    Error,
    Failed,
    Progress,
    Result,
    Routing,
    SubmitQuery,
    Token,
    Unavailable,
    Work,
    WorkResult,
    encode,
)
from broker.queue import JobQueue, QueueFull
from broker.realm import Others
from broker.registry import WorkerEntry, WorkerRegistry

if TYPE_CHECKING:
    from broker.metrics import BrokerMetrics
    from broker.subscriptions import Subscriptions

log = logging.getLogger("mtor.broker")
RECENT_GUIDS = 100_000  # how many guids a broker remembers to tell a resubmission (about 5 MB)
_query_decoder = msgspec.json.Decoder(SubmitQuery)
_result_decoder = msgspec.json.Decoder(Result)
_error_decoder = msgspec.json.Decoder(Error)


class Dispatcher:
    def __init__(
        self,
        config: BrokerConfig,
        journal: J.Journal,
        queue: JobQueue,
        registry: WorkerRegistry,
        outbox: Outbox,
        billing: Billing | None,
        subs: Subscriptions,
        metrics: BrokerMetrics,
        others: Others,
    ) -> None:
        """``others``: the rest of the realm (broker.realm), asked whether a
        worker on another broker serves an intent."""
        self._cfg = config
        self._others = others
        self._journal = journal
        self.queue = queue
        self.registry = registry
        self._outbox = outbox
        self._billing = billing
        self._subs = subs
        self._metrics = metrics
        self.jobs: dict[str, Job] = {}  # live intents (queued or running) by guid
        self._recent: dict[str, None] = {}  # guids accepted or run here lately, oldest first (see _seen)
        # Run ids need no secrecy, only to differ from a previous boot's: seeded
        # once, they cost no system call per dispatch.
        self._runs = random.Random(secrets.randbits(64))
        self._deadlines = Deadlines(self._timed_out)
        self.counters = {
            "submitted": 0,
            "completed": 0,
            "failed": 0,
            "cancelled": 0,
            "replayed": 0,
            "rejected": 0,
            "requeued": 0,
            "tokens": 0,
        }
        queue.serve(registry, self)

    # --- client side ----------------------------------------------------

    def live_query(self, guid: str) -> SubmitQuery | None:
        """The (normalised) query of ``guid`` if it is live here (the router routes
        a resubmission where it went; a finished or elsewhere-live one is
        answered from what the realm stored, see :meth:`_known`)."""
        job = self.jobs.get(guid)
        return None if job is None else job.query

    async def stored_query(self, guid: str) -> SubmitQuery | None:
        """The (normalised) query held under ``guid``: live here, or in the journal."""
        job = self.jobs.get(guid)
        if job is not None:
            return job.query
        record = await self._journal.get(guid)
        return None if record is None else _query_decoder.decode(record.query)

    async def submit(self, peer: Peer, query: SubmitQuery, routing: Routing | None = None) -> None:
        """``routing``: why the broker chose the query's intent, for its `accepted`."""
        try:
            await self._submit(peer, query, routing)
        except (Rejected, Unavailable) as rej:
            self.counters["rejected"] += 1
            self._metrics.rejected(rej.code)
            peer.send(rej.to_error(query.guid))

    async def _submit(self, peer: Peer, query: SubmitQuery, routing: Routing | None) -> None:
        user = peer.address
        assert user is not None  # the socket handler only passes authenticated peers
        check_guid(query.guid)
        query = normalise(query)
        if self._reattach(peer, user, query):
            return
        intent = query.intent or "chat"
        try:
            price = self._admit(user, intent, query)
        except Rejected:
            # A known intent is answered even when it could not run now
            # (its workers are gone, the queue is full).
            if await self._known(peer, user, query, routing is not None):
                return
            raise
        record = J.IntentRecord(query.guid, user, intent, J.QUEUED, encode(query), price, time.time())
        job = Job(query.guid, user, intent, query, price, time.monotonic(), client=peer)
        if self._billing is None and peer.fresh_accepted and query.guid not in self._recent:
            # It may start on a free worker here while the journal writes its
            # row (nothing is charged); nothing it produces is used before.
            # Not a guid that may be a resubmission (the journal would refuse
            # it, and its worker would have run it for nothing, a second time).
            job.backlog = []
        # A shared queue takes the intent while the journal writes it (two round
        # trips at once); nothing it produces leaves before the row is written.
        reserved = self.queue.reserve(job)
        try:
            # The insert doubles as the idempotency check, so a new intent costs no lookup.
            fresh = await self._journal.add(record)
        except BaseException:
            if reserved:
                self._abandon(job)
                await self.queue.release(job)
            raise
        if not fresh:
            if reserved:
                self._abandon(job)
                await self.queue.release(job)
            if not await self._known(peer, user, query, routing is not None):
                raise _retry_now("the intent changed hands while it was submitted")
            return
        if self._billing is not None:
            try:
                self._billing.hold(user, query.guid, price, query.authorisation)
            except Exception as exc:
                # No hold, no intent: nothing may run (or be restored) unpaid.
                if reserved:
                    self._abandon(job)
                    await self.queue.release(job)
                await self._journal.discard(query.guid)
                if isinstance(exc, PaymentRefused):
                    raise Rejected(exc.code, exc.message, exc.hint, **exc.detail) from None
                if not isinstance(exc, InsufficientFunds):
                    raise
                raise Rejected(
                    "insufficient_funds",
                    f"your balance {exc.balance} does not cover the price {exc.price}",
                    "deposit $9000 with `mtor wallet deposit`",
                    balance=exc.balance,
                    price=exc.price,
                ) from None
            self._subs.ledger_event("hold", query.guid, user, price)
        await self._accept(job, fresh=True, routing=routing)
        peer.fresh_accepted += 1

    async def _accept(self, job: Job, *, fresh: bool, routing: Routing | None = None) -> None:
        """Queue a journaled intent and tell its client. If the queue refuses
        a ``fresh`` one (journaled and held just now), nothing of it stays."""
        self._seen(job.guid)
        self.jobs[job.guid] = job
        if job.worker is None:  # (else it started while its row was written)
            self._subs.intent_event(job, "queued")
        try:
            position = await self.queue.enqueue(job, force=not fresh)
        except (QueueFull, Unavailable) as exc:
            # The realm's queue refused it after all (another broker filled it
            # first, or the engine is down).
            self.jobs.pop(job.guid, None)
            self._subs.intent_event(job, "failed")
            if fresh:
                if self._billing is not None:
                    self._billing.release(job.guid)
                    self._subs.ledger_event("release", job.guid, job.user, job.price_held)
                await self._journal.discard(job.guid)
            if isinstance(exc, QueueFull):
                raise self._full(job.intent, exc.limit, exc.scope) from None
            raise
        self.counters["submitted"] += 1
        self._outbox.send(
            job.client,
            encode(Accepted(guid=job.guid, intent=job.intent, position=position, price_held=job.price_held,
                            routing=routing)),
        )  # fmt: skip
        backlog, job.backlog = job.backlog, None
        for _, event in backlog or ():
            event()  # after `accepted`, in order: tokens, then the result (stored before it leaves)
        self.queue.pull(job.intent)

    def _seen(self, guid: str) -> None:
        """Remember ``guid`` a while: submitted again, it is not started early."""
        recent = self._recent
        recent[guid] = None
        if len(recent) > RECENT_GUIDS:
            del recent[next(iter(recent))]

    def _parked(self, job: Job, event: Callable[[], object], *, final: bool = False) -> bool:
        """Keep ``event`` for later if ``job``'s journal row is still being
        written (``final``: its worker is done with it); True if kept."""
        if job.backlog is None:
            return False
        job.backlog.append((final, event))
        return True

    def _abandon(self, job: Job) -> None:
        """The journal refused an intent that started meanwhile: its worker
        lets go of it, and nothing it produced is stored or sent."""
        backlog, job.backlog = job.backlog, None
        if backlog is None:
            return
        if self.jobs.get(job.guid) is job:
            del self.jobs[job.guid]
        worker = job.worker
        if worker is None or worker.running.get(job.guid) is not job:
            return  # it never started here, or its worker left
        if any(final for final, _ in backlog):
            self._detach(job, worker)  # it answered already: nothing to cancel
            self._pump_worker(worker)
        else:
            self._let_go(job, worker)

    def _admit(self, user: str, intent: str, query: SubmitQuery) -> int:
        """Every check a new intent must pass before it is journaled; returns its price."""
        check_limits(query, self._cfg, self._served)
        if not self.registry.can_serve(intent, query.model, user) and not self._others.can_serve(
            intent, query.model, user
        ):
            what = f"intent {intent!r}" + (f" with model {query.model!r}" if query.model else "")
            if self.registry.owner_only(intent):
                # It acts on the asker's own accounts: only their own worker may serve it.
                raise Rejected(
                    "no_worker",
                    f"no worker of yours serves {what}",
                    f"{intent} runs only on a worker registered with your own key: "
                    f"`mtor worker serve --intent {intent}` on your machine, or the embedded realm",
                    intent=intent,
                    owner_only=True,
                )
            raise Rejected(
                "no_worker",
                f"no connected worker serves {what}",
                "start one with `mtor worker serve`, or try again later",
                intent=intent,
            )
        if self.queue.depth_of(intent, user) >= self._cfg.user_queue_limit:
            raise self._full(intent, self._cfg.user_queue_limit, "user")
        if self.queue.depth(intent) >= self._cfg.queue_limit:
            raise self._full(intent, self._cfg.queue_limit, "realm")
        price = 0
        if self._billing is not None:
            price = self._billing.quote(user, intent, query.model, query.params)
        if query.max_price is not None and price > query.max_price:
            raise Rejected(
                "price_exceeded",
                f"the price {price} is above max_price {query.max_price}",
                "raise --max-price or pick a cheaper model",
                price=price,
            )
        return price

    @staticmethod
    def _full(intent: str, limit: int, scope: str) -> Rejected:
        if scope == "user":
            return Rejected(
                "queue_full",
                f"you have {limit} intents waiting in the {intent!r} queue, your limit",
                "wait for some of yours to finish, then retry",
                limit=limit,
                scope="user",
            )
        return Rejected(
            "queue_full",
            f"the {intent!r} queue is full ({limit} waiting, all users)",
            "retry in a little while",
            limit=limit,
            scope="realm",
        )

    def _served(self) -> set[str]:
        return self.registry.intents() | self._others.intents()

    def _reattach(self, peer: Peer, user: str, query: SubmitQuery) -> bool:
        """A guid still queued or running here: the same request again (a
        reconnected client), whose stream now goes to this connection."""
        job = self.jobs.get(query.guid)
        if job is None:
            return False
        if job.backlog is not None:
            raise _retry_now("the same guid is being submitted")
        self._check_same(job.user, job.query, user, query)
        job.client = peer
        self.queue.rehome(job, query.resume_run, query.resume_offset)
        self._accepted_again(job)
        self._catch_up(job, query.resume_run, query.resume_offset)
        return True

    def _accepted_again(self, job: Job) -> None:
        self._outbox.send(
            job.client,
            encode(Accepted(guid=job.guid, intent=job.intent, position=0, price_held=job.price_held)),
        )

    def _catch_up(self, job: Job, run: int, offset: int) -> None:
        """Send a resuming client the text of the current run it has not seen:
        from its offset if it follows this run, else the whole run so far."""
        if not (job.query.stream and job.stream_chars):
            return
        start = offset if run == job.run else 0
        if start >= job.stream_chars:
            return
        text = "".join(job.streamed)[start:]
        self._outbox.send(job.client, encode(Token(guid=job.guid, text=text, offset=start, run=job.run)))

    async def _known(self, peer: Peer, user: str, query: SubmitQuery, routed: bool) -> bool:
        """Answer a guid the realm knows: still live on another broker (its
        stream comes here from now on, from where the client stopped),
        finished (its stored outcome), or journaled but in no queue (its broker
        stopped between the two: queued now). False if the guid is unknown.
        ``routed``: the broker chose this query's intent, so it goes where the
        stored one went (the client sent the same text, which may route anew)."""
        job = await self.queue.claim(query.guid, user, peer, query.resume_run, query.resume_offset)
        if job is not None:
            self._check_same(job.user, job.query, user, _as_stored(query, job.query, routed))
            self.jobs[job.guid] = job
            self._accepted_again(job)
            return True
        record = await self._journal.get(query.guid)
        if record is None:
            return False
        stored = _query_decoder.decode(record.query)
        self._check_same(record.user, stored, user, _as_stored(query, stored, routed))
        if record.outcome is None:
            job = Job(record.guid, record.user, record.intent, stored, record.price_held, time.monotonic(), client=peer)
            await self._accept(job, fresh=False)
            return True
        self.counters["replayed"] += 1
        if record.state == J.DONE:
            result = _result_decoder.decode(record.outcome)
            peer.send(msgspec.structs.replace(result, replayed=True))
        else:
            error = _error_decoder.decode(record.outcome)
            peer.send(msgspec.structs.replace(error, detail={**error.detail, "replayed": True}))
        return True

    @staticmethod
    def _check_same(owner: str, stored: SubmitQuery, user: str, query: SubmitQuery) -> None:
        if owner != user:
            raise Rejected(
                "duplicate_guid",
                f"guid {query.guid!r} belongs to another user",
                "use a fresh UUID per request",
            )
        if (stored.intent, stored.prompt, stored.model) != (query.intent, query.prompt, query.model):
            raise Rejected(
                "duplicate_guid",
                f"guid {query.guid!r} was already used for a different request",
                "use a fresh UUID per request; resubmit a guid only to get its result",
            )

    async def cancel(self, peer: Peer, guid: str) -> None:
        job = self.jobs.get(guid)
        if job is None or job.user != peer.address or not await self._end(
            guid, job, Ending("cancelled", "cancelled by the user", "", J.CANCELLED)
        ):
            peer.send(
                Error(
                    code="unknown_guid",
                    message=f"no queued or running intent {guid!r}",
                    hint="it may have finished: resubmit the same guid to get its result",
                    guid=guid,
                )
            )

    async def terminate(self, guid: str, code: str, message: str, hint: str = "") -> bool:
        """End a live intent on the realm's behalf (a sysop, a ban); its hold is
        released. False if no such intent is queued or running."""
        return await self._end(guid, self.jobs.get(guid), Ending(code, message, hint, J.CANCELLED))

    async def _end(self, guid: str, job: Job | None, ending: Ending) -> bool:
        if job is not None and job.worker is not None:
            self.end(guid, ending)
            return True
        taken = await self.queue.withdraw(guid, job, ending)
        if isinstance(taken, Job):
            self._finish_error(taken, ending.code, ending.message, ending.hint, ending.state)
            return True
        return taken  # True: it runs on another broker, which ends it

    def end(self, guid: str, ending: Ending) -> None:
        job = self.jobs.get(guid)
        if job is None or job.worker is None:
            return  # it finished meanwhile
        if self._parked(job, lambda: self.end(guid, ending)):
            return
        self._let_go(job, job.worker)
        self._finish_error(job, ending.code, ending.message, ending.hint, ending.state)

    def relay(self, guid: str, frames: list[bytes]) -> None:
        job = self.jobs.get(guid)
        if job is None:
            return
        for data in frames:
            self._outbox.send(job.client, data)
            if data.startswith((b'{"type":"result"', b'{"type":"error"')):
                self.jobs.pop(guid, None)

    def rehome(self, guid: str, client: Recipient, run: int, offset: int) -> None:
        job = self.jobs.get(guid)
        if job is not None:
            job.client = client
            self._catch_up(job, run, offset)

    def moved(self, guid: str) -> None:
        job = self.jobs.get(guid)
        if job is not None and job.worker is None:
            self.jobs.pop(guid, None)

    # --- worker side ----------------------------------------------------

    def worker_draining(self, worker: WorkerEntry) -> None:
        """The worker takes no new work from now on (it is shutting down)."""
        worker.draining = True
        self._subs.changed("workers", "stats")

    def worker_joined(self, worker: WorkerEntry) -> None:
        self._subs.changed("workers", "stats")
        self._pump_worker(worker)

    def worker_left(self, worker: WorkerEntry) -> None:
        self.registry.remove(worker.id)
        for handle in worker.letting_go.values():
            handle.cancel()
        worker.letting_go.clear()
        message = f"worker {worker.id} disconnected mid-job"
        for job in list(worker.running.values()):
            self._detach(job, worker)
            if not self._parked(job, functools.partial(self._retry, job, "worker_failed", message)):
                self._retry(job, "worker_failed", message)
        self._subs.changed("workers", "stats")

    def on_token(self, worker: WorkerEntry, msg: Token | Progress) -> bool:
        job = worker.running.get(msg.guid)
        if job is None:
            return msg.guid in worker.letting_go  # late tokens of a job it gave up: drop quietly
        if self._parked(job, lambda: self.on_token(worker, msg)):
            return True
        if isinstance(msg, Token):
            job.tokens += 1
            self.counters["tokens"] += 1
            if not job.query.stream:
                return True
            # The worker's numbers are replaced by the broker's (decoded just now, ours to change).
            msg.offset = job.stream_chars
            msg.run = job.run
            job.streamed.append(msg.text)
            job.stream_chars += len(msg.text)
        if job.client is not None:
            job.client.send(msg)
        return True

    def on_result(self, worker: WorkerEntry, res: WorkResult) -> bool:
        job = worker.running.get(res.guid)
        if job is None:
            return self._released(worker, res.guid)
        if self._parked(job, lambda: self.on_result(worker, res), final=True):
            return True
        self._detach(job, worker)
        run_s = time.monotonic() - job.started_at
        if worker.health.success(run_s * 1000):
            self._subs.changed("workers")
        cost = 0
        if self._billing is not None:
            cost = self._billing.capture(job.guid, worker.address, job.intent, res.usage.reported())
            self._subs.ledger_event("capture", job.guid, job.user, cost)
        timings = dict(res.timings)
        timings["queue_s"] = job.started_at - job.waiting_since
        timings["run_s"] = run_s
        timings["total_s"] = time.monotonic() - job.queued_at
        result = Result(
            guid=job.guid,
            intent=job.intent,
            text=res.text,
            attachments=res.attachments,
            worker=worker.id,
            model=res.model,
            timings=timings,
            usage=res.usage,
            finish_reason=res.finish_reason,
            cost=cost,
            data=res.data,
        )
        data = encode(result)
        self._journal.finish(job.guid, J.DONE, data)
        self.jobs.pop(job.guid, None)
        self._outbox.send(job.client, data)
        self.queue.done(job, data)
        self.counters["completed"] += 1
        self._metrics.finished(job.intent, "done", time.monotonic() - job.queued_at)
        self._subs.intent_event(job, "done")
        self._pump_worker(worker)
        return True

    def on_failed(self, worker: WorkerEntry, failed: Failed) -> bool:
        job = worker.running.get(failed.guid)
        if job is None:
            return self._released(worker, failed.guid)
        if self._parked(job, lambda: self.on_failed(worker, failed), final=True):
            return True
        self._detach(job, worker)
        if worker.hands_back(failed):
            # A worker shutting down gave it back: no fault of anyone's.
            self._retry(job, "worker_failed", f"worker {worker.id} stopped before finishing it")
        elif failed.retryable:
            # The worker could not do it; another one might.
            log.info("worker %s failed intent %s (%s: %s); trying again", worker.id, job.guid, failed.code, failed.message)
            self._worker_failure(worker)
            self._retry(job, "worker_failed", f"worker {worker.id} failed: {failed.message}")
        else:
            # The request itself is bad: no other worker would do better. A
            # code the worker found (bad_params, upstream_unavailable...) is
            # the client's stable code too; anything else is worker_failed.
            code = failed.code if failed.code in REQUEST_ERROR_CODES else "worker_failed"
            self._finish_error(
                job,
                code,
                failed.message,
                failed.hint or "the worker rejected the request; check the prompt and parameters",
                J.FAILED,
                worker_code=failed.code,
            )
        self._pump_worker(worker)
        return True

    def _timed_out(self, job: Job) -> None:
        worker = job.worker
        if worker is None or worker.running.get(job.guid) is not job:
            return
        if self._parked(job, lambda: self._timed_out(job)):
            return
        self._let_go(job, worker)
        self._worker_failure(worker)
        timeout = self._cfg.timeout_for(job.intent)
        log.info("intent %s timed out on worker %s after %g s; trying again", job.guid, worker.id, timeout)
        self._retry(job, "timeout", f"worker {worker.id} did not finish within {timeout:g} s")

    def _detach(self, job: Job, worker: WorkerEntry) -> None:
        del worker.running[job.guid]
        job.worker = None  # its deadline is skipped from now on

    def _let_go(self, job: Job, worker: WorkerEntry) -> None:
        """Take a job back from a worker that may still be busy with it.

        The worker is told to cancel, and the job's slot stays booked (and the
        guid unavailable on that worker) until it answers for the guid or a
        further timeout passes: credits never overbook a worker, and a late
        answer can never be mistaken for a later attempt of the same guid.
        """
        self._detach(job, worker)
        worker.peer.send(Cancel(guid=job.guid))
        grace = self._cfg.timeout_for(job.intent)
        worker.letting_go[job.guid] = asyncio.get_running_loop().call_later(
            grace, self._released, worker, job.guid
        )

    def _released(self, worker: WorkerEntry, guid: str) -> bool:
        """The worker let go of a job it was told to drop; False if it had none."""
        handle = worker.letting_go.pop(guid, None)
        if handle is None:
            return False
        handle.cancel()
        self._pump_worker(worker)
        return True

    def _worker_failure(self, worker: WorkerEntry) -> None:
        if worker.health.failure():
            self._subs.changed("workers", "stats")

    # --- shared ---------------------------------------------------------

    def _retry(self, job: Job, code: str, message: str) -> None:
        if job.attempts >= self._cfg.max_attempts:
            self._finish_error(
                job,
                code,
                f"{message} (gave up after {job.attempts} attempts)",
                "the realm's workers could not serve it; try again later",
                J.FAILED,
            )
            return
        self.counters["requeued"] += 1
        self.queue.requeue(job)
        self._subs.intent_event(job, "requeued")
        self.queue.pull(job.intent)

    def _finish_error(
        self, job: Job, code: str, message: str, hint: str, state: str, **detail: object
    ) -> None:
        self.jobs.pop(job.guid, None)
        if self._billing is not None:
            self._billing.release(job.guid)
            self._subs.ledger_event("release", job.guid, job.user, job.price_held)
        data = encode(Error(code=code, message=message, hint=hint, guid=job.guid, detail=detail))
        self._journal.finish(job.guid, state, data)
        self._outbox.send(job.client, data)
        self.queue.done(job, data)
        outcome = "cancelled" if state == J.CANCELLED else "failed"
        self.counters[outcome] += 1
        self._metrics.finished(job.intent, outcome, time.monotonic() - job.queued_at)
        self._subs.intent_event(job, outcome)

    def _pump_worker(self, worker: WorkerEntry) -> None:
        for intent in worker.models:
            self.queue.pull(intent)

    def start(self, job: Job, worker: WorkerEntry) -> None:
        self._seen(job.guid)
        self.jobs[job.guid] = job
        job.worker = worker
        job.run = self._runs.getrandbits(31) | 1  # never 0 (unknown); random, so unique across restarts
        job.streamed = []
        job.stream_chars = 0
        job.attempts += 1
        job.tried.add(worker.id)
        job.started_at = time.monotonic()
        worker.running[job.guid] = job
        timeout = self._cfg.timeout_for(job.intent)
        self._deadlines.add(job, timeout)
        q = job.query
        work = Work(
            guid=job.guid,
            intent=job.intent,
            prompt=q.prompt,
            model=q.model,
            attachments=q.attachments,
            params=q.params,
            stream=q.stream,
        )
        # After the commit: a worker never runs an intent the journal does not
        # hold, except one a realm's broker starts while its row is written
        # (job.backlog): what that worker sends waits for the row, and goes if
        # the journal refuses the intent.
        self._outbox.send(worker.peer, encode(work))
        self._subs.intent_event(job, "running")

    # --- lifecycle ------------------------------------------------------

    async def restore(self) -> int:
        """Queue again every intent the journal holds unfinished and no broker has live (a restart)."""
        now_wall, now = time.time(), time.monotonic()
        jobs = []
        for record in await self._journal.unfinished():
            if record.guid in self.jobs:
                continue
            query = _query_decoder.decode(record.query)
            age = max(0.0, now_wall - record.created)
            jobs.append(Job(record.guid, record.user, record.intent, query, record.price_held, now - age))
        queued = await self.queue.restore(jobs)
        for job in queued:
            self.jobs[job.guid] = job
        return len(queued)

    async def sweep(self) -> None:
        """Fail queued intents that no worker took within max_queue_wait_s."""
        limit = self._cfg.max_queue_wait_s
        for job in await self.queue.expired(limit):
            self._finish_error(
                job,
                "timeout",
                f"no worker took the intent within {limit:g} s",
                "start a worker for this intent, or try again later",
                J.FAILED,
            )

    def close(self) -> None:
        """Stop every timer (the broker is stopping; the journal keeps the intents)."""
        self._deadlines.close()
        for worker in self.registry:
            for handle in worker.letting_go.values():
                handle.cancel()

    def pump_all(self) -> None:
        self.queue.pull_all()


def _as_stored(query: SubmitQuery, stored: SubmitQuery, routed: bool) -> SubmitQuery:
    if not routed:
        return query
    return msgspec.structs.replace(query, intent=stored.intent, prompt=stored.prompt)


def _retry_now(why: str) -> Rejected:
    return Rejected("unavailable", f"{why}; nothing was queued", "resubmit the same guid", retry_after=0.1)

"""SharedQueue: the realm's queue in Redis, with SafeQueue's order, for every broker.

It implements broker.queue.JobQueue. A broker that accepts an intent pushes
it and, in the same atomic step, takes what the round robin gives its own
free workers (often that very intent: no second round trip). A broker whose
free workers find the queue empty waits in the intent's hungry list, and the
next push anywhere tells the one that waited longest to pull. Every pull takes
jobs in SafeQueue's exact order: per intent, deficit round robin between
users, whichever broker they came through (realm.lua).

A broker that waits in an intent's hungry list (its queue is empty) and has
a free worker for a new intent of its own client starts it there without
asking Redis, and tells Redis lazily (:meth:`SharedQueue.reserve`); a push
that wakes a hungry broker pops the work for that broker's stored offer and
sends the jobs in its inbox (realm.lua's wake).

A job runs on the broker that pulled it; its client may be on another, whose
id is the job's ``home`` in Redis. What the job's worker produces goes to a
:class:`broker.engine.remote.RemotePeer` for that home, and a client that
resubmits its guid on a third broker claims the job: its home moves there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from broker.engine.link import Link, Reply, items
from broker.engine.remote import RemotePeer
from broker.jobs import Ending, Job
from broker.protocol import SubmitQuery, Unavailable, encode
from broker.queue import Host, QueueFull

if TYPE_CHECKING:
    from broker.engine.state import RealmState
    from broker.outbox import Outbox
    from broker.peer import Recipient
    from broker.registry import WorkerEntry, WorkerRegistry

log = logging.getLogger("mtor.broker")

_query = msgspec.json.Decoder(SubmitQuery)
IDLE_PULL_S = 1.0  # a broker with free workers asks anyway this often (a lost notice costs at most this)
RESTORE_AGE_S = 10.0  # journaled this long ago and in no queue: its broker stopped before queueing it


def running_here(job: Job, home: str) -> dict[str, Any]:
    """The op that records in Redis that ``job`` runs on the calling broker
    for a client on broker ``home`` (realm.lua's assert)."""
    return {"op": "assert", "g": job.guid, "u": job.user, "i": job.intent, "m": job.query.model or "",
            "p": str(job.price_held), "home": home, "attempts": job.attempts,
            "tried": orjson.dumps(sorted(job.tried)).decode(), "t": time.time()}  # fmt: skip


class SharedQueue:
    def __init__(
        self, link: Link, limit: int, user_limit: int, outbox: Outbox, state: RealmState, *, local: bool = True
    ) -> None:
        """``local``: a new intent may start on a free worker here without
        asking Redis first (see :meth:`reserve`); off where Redis must count
        every live intent at once (a realm-wide --max-concurrent)."""
        self._link = link
        self._limit = limit
        self._user_limit = user_limit
        self.outbox = outbox
        self._state = state
        self._registry: WorkerRegistry | None = None
        self._host: Host | None = None
        self._pulling: dict[str, bool] = {}  # intent -> a pull is on the wire (True: ask again after it)
        # Intents whose queue this broker found empty with workers to spare: it
        # waits in Redis' hungry list and is told when one arrives, so a slot
        # that frees meanwhile needs no pull.
        self._hungry: set[str] = set()
        # guid -> its reserve (None: it starts here without asking Redis), until enqueue or release
        self._held: dict[str, asyncio.Future[Reply] | None] = {}
        self._lazy_runs: dict[str, asyncio.Future[Reply]] = {}  # started here, Redis not told yet (maybe)
        self._local = local
        self._idle: asyncio.Task[None] | None = None

    def serve(self, registry: WorkerRegistry, host: Host) -> None:
        self._registry = registry
        self._host = host
        self._idle = asyncio.get_running_loop().create_task(self._pull_idle(), name="mtor-engine-idle-pull")

    # --- what the dispatcher asks ------------------------------------------

    def reserve(self, job: Job) -> bool:
        """Prepare a new intent's start while the journal writes its row.

        - This broker waits in the intent's hungry list (the realm's queue
          was empty when it last asked, with free workers here to spare, and
          no push anywhere has told it of work since), Redis answers, and a
          worker here is free for it: it starts here without asking Redis,
          as a lone broker would; Redis hears of it lazily
          (:meth:`_started_here`), or not at all if it ends first. Round
          robin has nothing to choose between.
        - Else, if its queue had no work at the last beat and a worker here
          has a free slot: it goes to Redis now, in parallel with the
          journal's insert (one round trip beside the other instead of two
          in a row), taken for that worker if the queue is still empty, else
          held out of the queue.

        In the first case the intent starts at once when the dispatcher
        holds back what its worker sends until the row is written
        (``job.backlog``), else at :meth:`enqueue`; in the second nothing
        starts before :meth:`enqueue` (the row is written). :meth:`release`
        takes either back (the journal refused the intent)."""
        assert self._registry is not None
        if (
            self._local
            and job.intent in self._hungry
            and self._link.up_since is not None  # with Redis down, new intents are refused (docs/scale.md)
            and self._registry.pick(job) is not None
        ):
            self._held[job.guid] = None
            if job.backlog is not None:  # it may start now: what it produces waits for the row (Dispatcher)
                worker = self._registry.pick(job)
                assert worker is not None
                self._started_here(job, worker)
            return True
        if self.depth(job.intent):
            return False
        offer = self._offer(job.intent)
        if not offer:
            return False
        self._held[job.guid] = self._link.call(self._push(job, offer, force=False, hold=True), [encode(job.query)])
        return True

    async def release(self, job: Job) -> None:
        held = self._held.pop(job.guid, None)
        run = self._lazy_runs.pop(job.guid, None)
        if run is not None and not self._link.withdraw(run):
            self._drop(job.guid)  # Redis heard it runs here: it goes
        if held is None:
            return  # nothing (else) was sent
        try:
            result = (await held).result
        except Unavailable:
            result = {"held": True}  # it may have been stored before the link failed
        if "popped" in result or "held" in result:
            self._drop(job.guid)

    def _drop(self, guid: str) -> None:
        # Kept and sent in order: it reaches Redis before anything the dispatcher asks next.
        self._link.call({"op": "drop", "g": guid}, keep=True)

    async def enqueue(self, job: Job, *, force: bool = False) -> int:
        if job.guid in self._held and self._held[job.guid] is None:
            del self._held[job.guid]
            if job.worker is not None:
                return 0  # started while its row was written
            worker = self._registry.pick(job) if self._registry is not None else None
            if worker is not None and job.intent in self._hungry:
                self._started_here(job, worker)
                return 0
        held = self._held.pop(job.guid, None)
        if held is not None:
            try:
                reply = await held
                if "held" in reply.result:
                    reply = await self._link.call({"op": "confirm", "g": job.guid, "offer": self._offer(job.intent)})
            except Unavailable:
                self._drop(job.guid)
                raise
            if "exists" in reply.result or "gone" in reply.result:
                held = None  # live elsewhere already, or lost by Redis meanwhile: a plain push settles it
        if held is None:
            reply = await self._link.call(self._push(job, self._offer(job.intent), force=force), [encode(job.query)])
        result = reply.result
        if "full" in result:
            raise QueueFull(job.intent, int(result["full"]), str(result.get("scope", "realm")))
        self._note_hunger(job.intent, result)
        self._start(reply, items(result.get("popped")))
        return int(result.get("pos", 0))

    def _started_here(self, job: Job, worker: WorkerEntry) -> None:
        """Start ``job`` on ``worker`` here, and tell Redis lazily (with the next
        round, or within LAZY_S) that it runs here: from then on a reap puts
        it back in the queue if this broker dies. Until then only the journal
        has it (unfinished), as between its row and its push: the client's
        resubmission, or the reconcile, queues it again."""
        assert self._host is not None and self._registry is not None
        self._host.start(job, worker)
        if not self._registry.has_free(job.intent):
            self._hungry.discard(job.intent)  # full now: the next intent asks Redis, which learns it
        self._lazy_runs[job.guid] = self._link.call(running_here(job, self._link.id), [encode(job.query)],
                                                     keep=True, lazy=True)  # fmt: skip

    def _push(self, job: Job, offer: list[dict[str, Any]], *, force: bool, hold: bool = False) -> dict[str, Any]:
        return {
            "op": "push",
            "g": job.guid,
            "u": job.user,
            "i": job.intent,
            "m": job.query.model or "",
            "p": str(job.price_held),
            "home": self._link.id,
            "limit": None if force else self._limit,
            "ulimit": None if force else self._user_limit,
            "offer": offer,
            "hold": hold,
        }

    def _note_hunger(self, intent: str, result: dict[str, Any]) -> None:
        if "hungry" not in result:
            return
        if result["hungry"]:
            self._hungry.add(intent)
        else:
            self._hungry.discard(intent)

    def requeue(self, job: Job) -> None:
        self._lazy_runs.pop(job.guid, None)  # its assert goes first: calls keep their order
        self._hungry.discard(job.intent)  # it is queued again: whoever pulls next may take it
        self._link.call(
            {"op": "requeue", "g": job.guid, "attempts": job.attempts, "tried": orjson.dumps(sorted(job.tried)).decode()},
            keep=True,
        )
        if isinstance(job.client, RemotePeer):
            self._jobs().pop(job.guid, None)  # it may run anywhere now; its client is not here

    def pull(self, intent: str, *, told: bool = False) -> None:
        """``told``: another broker queued work of ``intent`` (this one is hungry for it)."""
        if told:
            self._hungry.discard(intent)
        elif intent in self._hungry:
            return  # the queue was empty; the next push anywhere tells this broker
        if intent in self._pulling:
            self._pulling[intent] = True
            return
        offer = self._offer(intent)
        if not offer and not told:
            return  # (told, it asks all the same: Redis then tells the next broker waiting)
        self._pulling[intent] = False
        self._link.call({"op": "pull", "i": intent, "offer": offer}).add_done_callback(
            lambda done: self._pulled(intent, done)
        )

    def _pulled(self, intent: str, done: asyncio.Future[Reply]) -> None:
        again = self._pulling.pop(intent, False)
        if done.cancelled():
            return
        if done.exception() is None:
            reply = done.result()
            self._note_hunger(intent, reply.result)
            self._start(reply, items(reply.result.get("popped")))
        if again:
            self.pull(intent)

    def pull_all(self, *, told: bool = False) -> None:
        assert self._registry is not None
        for intent in self._registry.intents():
            self.pull(intent, told=told)

    async def _pull_idle(self) -> None:
        """Pull anyway now and then: a notice lost with Redis' last writes costs at most this wait."""
        while True:
            await asyncio.sleep(IDLE_PULL_S)
            self.pull_all(told=True)

    async def withdraw(self, guid: str, job: Job | None, ending: Ending) -> Job | bool:
        reply = await self._link.call(
            {"op": "withdraw", "g": guid, "ending": [ending.code, ending.message, ending.hint, ending.state]}
        )
        result = reply.result
        if "removed" in result:
            return self._job(result["removed"], reply.blob(result["removed"]["q"]))
        return "running" in result

    async def claim(self, guid: str, user: str, client: Recipient, run: int, offset: int) -> Job | None:
        reply = await self._link.call({"op": "claim", "g": guid, "u": user, "run": run, "offset": offset})
        found = reply.result.get("job")
        if not isinstance(found, dict):
            return None
        job = self._job(found, reply.blob(found["q"]))
        job.client = client
        return job

    def rehome(self, job: Job, run: int, offset: int) -> None:
        self._link.call({"op": "rehome", "g": job.guid, "run": run, "offset": offset}, keep=True)

    def done(self, job: Job, outcome: bytes) -> None:
        sent = job.client.home if isinstance(job.client, RemotePeer) else ""
        op = {"op": "done", "g": job.guid, "sent": sent}

        def tell() -> None:
            run = self._lazy_runs.pop(job.guid, None)
            if run is not None and self._link.withdraw(run):
                return  # Redis never heard of it: nothing to tidy up
            # Lazy: only Redis' bookkeeping waits for it (and a client that
            # moved to another broker meanwhile, rarely), not this intent's client.
            self._link.call(op, [outcome], keep=True, lazy=True)

        # After the pass's commit, with the frames: the outcome is stored first.
        self.outbox.later(tell)

    async def expired(self, limit_s: float) -> list[Job]:
        reply = await self._link.call({"op": "expire", "limit": limit_s})
        return [self._job(found, reply.blob(found["q"])) for found in items(reply.result.get("jobs"))]

    async def restore(self, jobs: list[Job]) -> list[Job]:
        now_wall, now = time.time(), time.monotonic()
        # A young intent may be between its journal row and its push on a live
        # broker: leave it to that broker (or to the next reconcile).
        old = [job for job in jobs if now - job.queued_at >= RESTORE_AGE_S]
        pushes = [
            self._link.call(
                {"op": "push", "g": job.guid, "u": job.user, "i": job.intent, "m": job.query.model or "",
                 "p": str(job.price_held), "home": self._link.id, "limit": None, "offer": [],
                 "t": now_wall - (now - job.queued_at)},
                [encode(job.query)],
            )
            for job in old
        ]
        replies = await asyncio.gather(*pushes)
        return [job for job, reply in zip(old, replies, strict=True) if "exists" not in reply.result]

    # --- realm-wide views (as of the last beat) -----------------------------

    def depth(self, intent: str) -> int:
        return int(self._state.queues.get(intent, {}).get("depth", 0))

    def depth_of(self, intent: str, user: str) -> int:
        users = self._state.queues.get(intent, {}).get("users")
        return int(users.get(user, 0)) if isinstance(users, dict) else 0

    def intents(self) -> list[str]:
        return list(self._state.queues)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self._state.queues

    def __len__(self) -> int:
        return sum(int(q.get("depth", 0)) for q in self._state.queues.values())

    # --- helpers ---------------------------------------------------------------

    def _jobs(self) -> dict[str, Job]:
        assert self._host is not None
        return self._host.jobs

    def _offer(self, intent: str) -> list[dict[str, Any]]:
        """This broker's free slots for ``intent``, worker by worker, as realm.lua reads them."""
        assert self._registry is not None
        offer: list[dict[str, Any]] = []
        for w in self._registry:
            models = w.models.get(intent)
            if models is None:
                continue
            free = w.free_for(intent)
            if free <= 0:
                continue
            slot: dict[str, Any] = {"n": free, "m": {m: True for m in models}}
            if intent in w.owner_only:
                slot["o"] = w.address.lower()  # it serves its own address's intents only
            offer.append(slot)
        return offer

    def told_to_run(self, told: dict[str, Any], fields: dict[bytes, bytes]) -> None:
        """Jobs a push elsewhere popped for this broker's free workers (it
        waited in the hungry list, with its offer): start them, as a pull's."""
        self._note_hunger(str(told["i"]), told)
        self._begin([(found, fields[b"q:" + str(found["g"]).encode()]) for found in items(told.get("jobs"))])

    def _start(self, reply: Reply, popped: list[dict[str, Any]]) -> None:
        self._begin([(found, reply.blob(found["q"])) for found in popped])

    def _begin(self, popped: list[tuple[dict[str, Any], bytes]]) -> None:
        registry, host = self._registry, self._host
        assert registry is not None and host is not None
        for found, query in popped:
            job = self._job(found, query)
            worker = registry.pick(job)
            if worker is None:  # its free slot went to another job meanwhile
                self.requeue(job)
                continue
            host.start(job, worker)

    def _job(self, found: dict[str, Any], query: bytes) -> Job:
        """This broker's record of a job, or one made from its description in Redis
        (``query``: its payload)."""
        guid = found["g"]
        mine = self._jobs().get(guid)
        if mine is not None:
            return mine
        now_wall, now = time.time(), time.monotonic()
        home = found.get("home") or ""
        job = Job(
            guid,
            found["user"],
            found["intent"],
            _query.decode(query),
            int(found["price"]),
            now - max(0.0, now_wall - float(found.get("t") or now_wall)),
            attempts=int(found.get("attempts") or 0),
            tried=set(orjson.loads(found.get("tried") or "[]")),
        )
        job.waiting_since = now - max(0.0, now_wall - float(found.get("w") or now_wall))
        if home and home != self._link.id:
            job.client = RemotePeer(home, guid, self._link, self.outbox)
        return job

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            await asyncio.gather(self._idle, return_exceptions=True)

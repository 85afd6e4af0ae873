"""SharedQueue: the realm's queue in Redis, with SafeQueue's order, for every broker.

It implements broker.queue.JobQueue. A broker that accepts an intent pushes
it and, in the same atomic step, takes what the round robin gives its own
free workers (often that very intent: no second round trip). A broker whose
free workers find the queue empty waits in the intent's hungry list, and the
next push anywhere tells the one that waited longest to pull. Every pull takes
jobs in SafeQueue's exact order: per intent, deficit round robin between
users, whichever broker they came through (realm.lua).

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
    from broker.registry import WorkerRegistry

log = logging.getLogger("mtor.broker")

_query = msgspec.json.Decoder(SubmitQuery)
IDLE_PULL_S = 1.0  # a broker with free workers asks anyway this often (a lost notice costs at most this)
RESTORE_AGE_S = 10.0  # journaled this long ago and in no queue: its broker stopped before queueing it


class SharedQueue:
    def __init__(self, link: Link, limit: int, user_limit: int, outbox: Outbox, state: RealmState) -> None:
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
        self._held: dict[str, asyncio.Future[Reply]] = {}  # guid -> its reserve, until enqueue or release
        self._idle: asyncio.Task[None] | None = None

    def serve(self, registry: WorkerRegistry, host: Host) -> None:
        self._registry = registry
        self._host = host
        self._idle = asyncio.get_running_loop().create_task(self._pull_idle(), name="mtor-engine-idle-pull")

    # --- what the dispatcher asks ------------------------------------------

    def reserve(self, job: Job) -> bool:
        """Send a new intent to Redis while the journal writes its row (one
        round trip in parallel with the other instead of two in a row): taken
        at once for a free worker here when its queue is empty, else held out
        of the queue; nothing starts before :meth:`enqueue` (row written) or
        goes with :meth:`release` (refused). Not worth it when the intent has
        no free worker here or its queue had work at the last beat: it would
        be held, and its confirm is the push it saves."""
        if self.depth(job.intent):
            return False
        offer = self._offer(job.intent)
        if not offer:
            return False
        self._held[job.guid] = self._link.call(self._push(job, offer, force=False, hold=True), [encode(job.query)])
        return True

    async def release(self, job: Job) -> None:
        held = self._held.pop(job.guid, None)
        if held is None:
            return
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
        if not offer:
            return
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
            return self._job(reply, result["removed"])
        return "running" in result

    async def claim(self, guid: str, user: str, client: Recipient, run: int, offset: int) -> Job | None:
        reply = await self._link.call({"op": "claim", "g": guid, "u": user, "run": run, "offset": offset})
        found = reply.result.get("job")
        if not isinstance(found, dict):
            return None
        job = self._job(reply, found)
        job.client = client
        return job

    def rehome(self, job: Job, run: int, offset: int) -> None:
        self._link.call({"op": "rehome", "g": job.guid, "run": run, "offset": offset}, keep=True)

    def done(self, job: Job, outcome: bytes) -> None:
        sent = job.client.home if isinstance(job.client, RemotePeer) else ""
        op = {"op": "done", "g": job.guid, "sent": sent}
        # After the pass's commit, with the frames: the outcome is stored first.
        # Lazy: only Redis' bookkeeping waits for it (and a client that moved
        # to another broker meanwhile, rarely), not this intent's client.
        self.outbox.later(lambda: self._link.call(op, [outcome], keep=True, lazy=True))

    async def expired(self, limit_s: float) -> list[Job]:
        reply = await self._link.call({"op": "expire", "limit": limit_s})
        return [self._job(reply, found) for found in items(reply.result.get("jobs"))]

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

    def _start(self, reply: Reply, popped: list[dict[str, Any]]) -> None:
        registry, host = self._registry, self._host
        assert registry is not None and host is not None
        for found in popped:
            job = self._job(reply, found)
            worker = registry.pick(job)
            if worker is None:  # its free slot went to another job meanwhile
                self.requeue(job)
                continue
            host.start(job, worker)

    def _job(self, reply: Reply, found: dict[str, Any]) -> Job:
        """This broker's record of a job, or one made from its description in Redis."""
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
            _query.decode(reply.blob(found["q"])),
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

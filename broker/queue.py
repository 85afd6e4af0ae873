"""The queue of intents, and how queued intents reach this broker's free workers.

:class:`JobQueue` is what the dispatcher uses. :class:`SafeQueue` (here) keeps
bounded per-intent queues in this process; ``broker.engine.queue.SharedQueue``
keeps the same queues in Redis for every broker of a realm, with the same
order. Within an intent, users are served by deficit round robin with a unit
cost per intent: each active user gets one dispatch per round, so one user
with fifty queued intents delays another user's intent by at most one intent
per other active user, not by fifty.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from broker.jobs import Ending, Job

if TYPE_CHECKING:
    from broker.peer import Recipient
    from broker.registry import WorkerEntry, WorkerRegistry


class Host(Protocol):
    """What a queue calls back into (the dispatcher)."""

    jobs: dict[str, Job]  # the intents this broker has live: its clients' and its workers'

    def start(self, job: Job, worker: WorkerEntry) -> None:
        """Run ``job`` on ``worker``, which :meth:`WorkerRegistry.pick` chose."""
        ...

    def relay(self, guid: str, frames: list[bytes]) -> None:
        """Frames another broker's worker produced for an intent whose client is here."""
        ...

    def end(self, guid: str, ending: Ending) -> None:
        """End an intent that runs here, on another broker's request."""
        ...

    def rehome(self, guid: str, client: Recipient, run: int, offset: int) -> None:
        """The client of an intent that runs here now listens through
        ``client``; it has the text of ``run`` up to ``offset``."""
        ...

    def moved(self, guid: str) -> None:
        """The client of an intent went to another broker, which reports to it now."""
        ...


class JobQueue(Protocol):
    """Queued intents, fair between users, and how they reach free workers."""

    def serve(self, registry: WorkerRegistry, host: Host) -> None:
        """Where free workers are, and who starts jobs on them (given once, by the dispatcher)."""
        ...

    def reserve(self, job: Job) -> bool:
        """Start queueing (or running, when ``job.backlog`` holds back what its
        worker sends) a new intent while the journal writes its row; it is
        queued for others only at :meth:`enqueue`, and :meth:`release` takes
        it back. False: this queue does nothing ahead (enqueue does it all)."""
        ...

    async def release(self, job: Job) -> None:
        """Take back what :meth:`reserve` started (the journal refused the intent)."""
        ...

    async def enqueue(self, job: Job, *, force: bool = False) -> int:
        """Queue a new intent; its position (0 = next). ``force`` (an intent
        accepted once already) skips the limit. Raises QueueFull or
        broker.protocol.Unavailable."""
        ...

    def requeue(self, job: Job) -> None:
        """Put back at the front an intent whose attempt failed; never refused."""
        ...

    def pull(self, intent: str) -> None:
        """Hand queued jobs of ``intent`` to this broker's free workers, now or soon."""
        ...

    def pull_all(self) -> None: ...

    async def withdraw(self, guid: str, job: Job | None, ending: Ending) -> Job | bool:
        """Take a queued intent out of the queue: the Job, for the caller to end;
        True if it runs on another broker, which ends it; False if it is not
        queued (``job``: this broker's record of it, if any)."""
        ...

    async def claim(self, guid: str, user: str, client: Recipient, run: int, offset: int) -> Job | None:
        """``user``'s intent ``guid`` live elsewhere in the realm, from now on
        reporting to ``client`` (from ``offset`` of ``run``: protocol.Token);
        None if no broker has it."""
        ...

    def rehome(self, job: Job, run: int, offset: int) -> None:
        """``job.client`` changed: route what other brokers produce for it here."""
        ...

    def done(self, job: Job, outcome: bytes) -> None:
        """``job`` ended with ``outcome`` (stored, then sent to ``job.client``)."""
        ...

    async def expired(self, limit_s: float) -> list[Job]:
        """Take out and return the intents that waited longer than ``limit_s``."""
        ...

    async def restore(self, jobs: list[Job]) -> list[Job]:
        """Queue intents the journal holds unfinished (after a restart); the
        ones queued now (not those live already)."""
        ...

    def depth(self, intent: str) -> int: ...
    def depth_of(self, intent: str, user: str) -> int: ...
    def intents(self) -> list[str]: ...
    def snapshot(self) -> dict[str, dict[str, Any]]: ...
    def __len__(self) -> int: ...


class QueueFull(Exception):
    def __init__(self, intent: str, limit: int, scope: str = "realm") -> None:
        """``scope``: whose limit was reached, "realm" (all users) or "user" (one user's)."""
        super().__init__(f"the {intent!r} queue is full ({limit} intents waiting)")
        self.intent = intent
        self.limit = limit
        self.scope = scope


class _IntentQueue:
    __slots__ = ("size", "users")

    def __init__(self) -> None:
        # user -> their jobs, in round-robin order: the first user is served next.
        self.users: OrderedDict[str, deque[Job]] = OrderedDict()
        self.size = 0


class SafeQueue:
    """The in-process queue (one broker): every call is answered at once."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queues: dict[str, _IntentQueue] = {}
        self._registry: WorkerRegistry | None = None
        self._host: Host | None = None

    def serve(self, registry: WorkerRegistry, host: Host) -> None:
        self._registry = registry
        self._host = host

    def reserve(self, job: Job) -> bool:
        return False  # enqueue answers at once

    async def release(self, job: Job) -> None:
        pass

    async def enqueue(self, job: Job, *, force: bool = False) -> int:
        return self.push(job, force=force)

    def requeue(self, job: Job) -> None:
        self.push(job, front=True)

    def pull(self, intent: str) -> None:
        q = self._queues.get(intent)
        if q is None or not q.size:
            return
        registry, host = self._registry, self._host
        assert registry is not None and host is not None
        chosen: WorkerEntry | None = None

        def accept(job: Job) -> bool:
            nonlocal chosen
            chosen = registry.pick(job)
            return chosen is not None

        while registry.has_free(intent):
            job = self.pop(intent, accept)
            if job is None:
                return
            assert chosen is not None
            host.start(job, chosen)

    def pull_all(self) -> None:
        for intent in self.intents():
            self.pull(intent)

    async def withdraw(self, guid: str, job: Job | None, ending: Ending) -> Job | bool:
        return job if job is not None and self.remove(job) else False

    async def claim(self, guid: str, user: str, client: Recipient, run: int, offset: int) -> Job | None:
        return None  # every live intent of a lone broker is in its dispatcher's jobs

    def rehome(self, job: Job, run: int, offset: int) -> None:
        pass  # nothing runs elsewhere

    def done(self, job: Job, outcome: bytes) -> None:
        pass  # popped jobs leave no trace here

    async def expired(self, limit_s: float) -> list[Job]:
        now = time.monotonic()
        stale = [job for job in self.jobs() if now - job.waiting_since > limit_s]
        for job in stale:
            self.remove(job)
        return stale

    async def restore(self, jobs: list[Job]) -> list[Job]:
        for job in jobs:
            self.push(job, force=True)
        return jobs

    def push(self, job: Job, *, front: bool = False, force: bool = False) -> int:
        """Queue a job; returns its position (0 = next).

        ``front`` (requeues) and ``force`` (restored after a restart) skip the
        limit: those intents were accepted once already and must not be lost.
        """
        q = self._queues.get(job.intent)
        if q is None:
            q = self._queues[job.intent] = _IntentQueue()
        if not (front or force) and q.size >= self._limit:
            raise QueueFull(job.intent, self._limit)
        jobs = q.users.get(job.user)
        if jobs is None:
            jobs = q.users[job.user] = deque()
        if front:
            jobs.appendleft(job)
            q.users.move_to_end(job.user, last=False)
        else:
            jobs.append(job)
        q.size += 1
        job.waiting_since = time.monotonic()
        return self._position(q, job) if not front else 0

    @staticmethod
    def _position(q: _IntentQueue, job: Job) -> int:
        # With round robin, a job at depth d in its user's queue waits for
        # d rounds of every user at least that deep.
        depth = len(q.users[job.user]) - 1
        if depth == 0:  # the user's only one: one round of every other user
            return len(q.users) - 1
        ahead = 0
        for user, jobs in q.users.items():
            if user == job.user:
                ahead += depth
            else:
                ahead += min(len(jobs), depth + 1)
        return ahead

    def pop(self, intent: str, accept: Callable[[Job], bool]) -> Job | None:
        """The next job for ``intent`` in fair order that ``accept`` takes, or None.

        Only the head of each user's queue is offered, which keeps each user's
        intents in order.
        """
        q = self._queues.get(intent)
        if q is None or q.size == 0:
            return None
        for user, jobs in q.users.items():
            job = jobs[0]
            if accept(job):
                jobs.popleft()
                q.size -= 1
                if jobs:
                    q.users.move_to_end(user)
                else:
                    del q.users[user]
                return job
        return None

    def remove(self, job: Job) -> bool:
        q = self._queues.get(job.intent)
        if q is None:
            return False
        jobs = q.users.get(job.user)
        if jobs is None or job not in jobs:
            return False
        jobs.remove(job)
        q.size -= 1
        if not jobs:
            del q.users[job.user]
        return True

    def depth(self, intent: str) -> int:
        q = self._queues.get(intent)
        return q.size if q else 0

    def depth_of(self, intent: str, user: str) -> int:
        """How many of ``user``'s intents wait in ``intent``'s queue."""
        q = self._queues.get(intent)
        jobs = q.users.get(user) if q else None
        return len(jobs) if jobs else 0

    def intents(self) -> list[str]:
        return [intent for intent, q in self._queues.items() if q.size]

    def jobs(self) -> Iterator[Job]:
        for q in self._queues.values():
            for jobs in q.users.values():
                yield from jobs

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Per intent: depth and queued intents per user (for `queue` subscribers)."""
        return {
            intent: {"depth": q.size, "users": {u: len(j) for u, j in q.users.items()}}
            for intent, q in self._queues.items()
            if q.size
        }

    def __len__(self) -> int:
        return sum(q.size for q in self._queues.values())

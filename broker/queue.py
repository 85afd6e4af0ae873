"""SafeQueue: bounded per-intent queues with per-user fairness.

Within an intent, users are served by deficit round robin with a unit cost
per intent: each active user gets one dispatch per round, so one user with
fifty queued intents delays another user's intent by at most one intent per
other active user, not by fifty.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator

from broker.jobs import Job


class QueueFull(Exception):
    def __init__(self, intent: str, limit: int) -> None:
        super().__init__(f"the {intent!r} queue is full ({limit} intents waiting)")
        self.intent = intent
        self.limit = limit


class _IntentQueue:
    __slots__ = ("size", "users")

    def __init__(self) -> None:
        # user -> their jobs, in round-robin order: the first user is served next.
        self.users: OrderedDict[str, deque[Job]] = OrderedDict()
        self.size = 0


class SafeQueue:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queues: dict[str, _IntentQueue] = {}

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

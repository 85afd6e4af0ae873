"""Job timeouts without a timer per job.

Jobs given the same timeout expire in the order they were dispatched, so each
timeout keeps a FIFO of (deadline, job, run) and one timer waits for the
earliest head. A job that finished, or was dispatched again since (another
run), is skipped when its turn comes. Compared with a ``call_later`` per job,
a dispatch costs an append and a finished job costs nothing, and the event
loop's timer heap stays small however many intents a second pass through.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from broker.jobs import Job

_MIN_COMPACT = 1024


class Deadlines:
    def __init__(self, expire: Callable[[Job], None]) -> None:
        """``expire(job)`` is called for a job still on the run it timed out in."""
        self._expire = expire
        self._fifos: dict[float, deque[tuple[float, Job, int]]] = {}
        self._compact_at: dict[float, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        # Looked up once: asyncio.get_running_loop() costs a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, job: Job, timeout: float) -> None:
        """Time out ``job``'s current run after ``timeout`` seconds."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        fifo = self._fifos.get(timeout)
        if fifo is None:
            fifo = self._fifos[timeout] = deque()
            self._compact_at[timeout] = _MIN_COMPACT
        fifo.append((deadline, job, job.run))
        if len(fifo) > self._compact_at[timeout]:
            self._compact(timeout, fifo)
        if deadline < self._timer_at:
            self._schedule(deadline)

    def _compact(self, timeout: float, fifo: deque[tuple[float, Job, int]]) -> None:
        """Drop finished jobs from the middle too, now and then (amortised O(1))."""
        live = [entry for entry in fifo if _live(entry)]
        fifo.clear()
        fifo.extend(live)
        self._compact_at[timeout] = max(_MIN_COMPACT, 2 * len(live))

    def _schedule(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        assert self._loop is not None
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        assert self._loop is not None
        now = self._loop.time()
        expired: list[Job] = []
        earliest = float("inf")
        for fifo in self._fifos.values():
            while fifo and (fifo[0][0] <= now or not _live(fifo[0])):
                entry = fifo.popleft()
                if _live(entry):
                    expired.append(entry[1])
            if fifo:
                earliest = min(earliest, fifo[0][0])
        if earliest < float("inf"):
            self._schedule(earliest)
        for job in expired:
            self._expire(job)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, float("inf")
        self._fifos.clear()


def _live(entry: tuple[float, Job, int]) -> bool:
    _, job, run = entry
    return job.worker is not None and job.run == run

"""Job timeouts without a timer per job.

Jobs given the same timeout expire in the order they were dispatched, so each
timeout keeps a FIFO of (deadline, job, run) and one timer waits for the
earliest head. A job that finished, or was dispatched again since (another
run), is skipped when its turn comes. Compared with a ``call_later`` per job,
a dispatch costs an append and a finished job costs nothing, and the event
loop's timer heap stays small however many intents a second pass through.

A worker's time is its own: a deadline starts when the pass that dispatched
the job ends (its `work` frame leaves at the end of the pass, see
broker.outbox), and is acted on one pass after it passes (an answer already
on the socket is read first). A broker that stalls (a slow billing call, a
busy machine) therefore never blames a worker for its own delay.
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
        self._starting: list[tuple[Job, float]] = []  # dispatched in this pass

    def add(self, job: Job, timeout: float) -> None:
        """Time out ``job``'s current run ``timeout`` seconds after this pass ends."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if not self._starting:
            # Scheduled after the outbox's flush of this pass (call_soon is FIFO
            # and the job's work frame was queued first).
            loop.call_soon(self._start_clocks)
        self._starting.append((job, timeout))

    def _start_clocks(self) -> None:
        starting, self._starting = self._starting, []
        assert self._loop is not None
        now = self._loop.time()
        for job, timeout in starting:
            self._track(job, timeout, now + timeout)

    def _track(self, job: Job, timeout: float, deadline: float) -> None:
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
        expired: list[tuple[Job, int]] = []
        earliest = float("inf")
        for fifo in self._fifos.values():
            while fifo and (fifo[0][0] <= now or not _live(fifo[0])):
                entry = fifo.popleft()
                if _live(entry):
                    expired.append((entry[1], entry[2]))
            if fifo:
                earliest = min(earliest, fifo[0][0])
        if earliest < float("inf"):
            self._schedule(earliest)
        if expired:
            # One loop pass later: after a stall (a long pass, a busy machine) the
            # answers already on the sockets are read in this pass, and a job whose
            # result is among them finished; it is then skipped, not timed out.
            self._loop.call_soon(self._expire_all, expired)

    def _expire_all(self, jobs: list[tuple[Job, int]]) -> None:
        for job, run in jobs:
            if job.worker is not None and job.run == run:
                self._expire(job)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, float("inf")
        self._fifos.clear()
        self._starting.clear()


def _live(entry: tuple[float, Job, int]) -> bool:
    _, job, run = entry
    return job.worker is not None and job.run == run

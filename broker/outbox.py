"""Commit the journal (and the ledger) once per event-loop pass, then write every peer's queued frames.

A SQLite journal commits at once and the frames go out in the same pass. A
journal that stores over the network (PostgreSQL) returns a future from
``commit()``: that pass's frames are held until it resolves, and every later
pass's frames wait behind them, so no frame leaves before what it reports is
stored and each peer still gets its frames in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from broker.journal import Journal

if TYPE_CHECKING:
    from broker.billing import Billing
    from broker.peer import Recipient

Held = tuple["asyncio.Future[None] | None", list[tuple["Recipient", list[bytes]]], list[Callable[[], object]]]


class Outbox:
    def __init__(self, journal: Journal, billing: Billing | None = None) -> None:
        self._journal = journal
        self._billing = billing
        # Workers are written first: a `work` frame is on the critical path of
        # an intent, the `accepted` that goes out with it is not, and on a busy
        # machine waking the client first can delay the worker by a time slice.
        self._workers: list[Recipient] = []
        self._clients: list[Recipient] = []
        self._later: list[Callable[[], object]] = []  # run after the pass's commit (a shared engine's updates)
        self._scheduled = False
        self._held: deque[Held] = deque()  # passes waiting for their commit, oldest first
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # get_running_loop() costs a getpid() call

    def send(self, peer: Recipient | None, data: bytes) -> None:
        """Queue ``data`` for ``peer``; it is written at the end of this pass,
        after everything journaled so far is committed. ``peer`` None (a client
        gone since it submitted) still schedules the commit."""
        if peer is not None and not peer.closed:
            peer.queued.append(data)
            if not peer.marked:
                peer.marked = True
                (self._workers if peer.role == "worker" else self._clients).append(peer)
        if not self._scheduled:
            self._scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            # call_soon runs after every callback already ready in this pass,
            # so all writes of the pass share one commit.
            self._loop.call_soon(self.flush)

    def later(self, run: Callable[[], object]) -> None:
        """Call ``run`` after this pass's commit, with its frames."""
        self._later.append(run)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        stored = self._journal.commit()
        if self._billing is not None:
            self._billing.commit()
        if stored is None and not self._held:
            for peers in (self._workers, self._clients):
                for peer in peers:
                    peer.marked = False
                    peer.write_queued()
            self._workers, self._clients = [], []
            if self._later:
                later, self._later = self._later, []
                for run in later:
                    run()
            return
        frames = []
        for peers in (self._workers, self._clients):
            for peer in peers:
                peer.marked = False
                frames.append((peer, peer.take_queued()))
        self._workers, self._clients = [], []
        self._held.append((stored, frames, self._later))
        self._later = []
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_held(), name="mtor-outbox")

    async def _write_held(self) -> None:
        try:
            while self._held:
                stored, frames, later = self._held[0]
                if stored is not None:
                    await asyncio.shield(stored)
                self._held.popleft()
                for peer, data in frames:
                    peer.write(data)
                for run in later:
                    run()
        finally:
            self._writer = None

    async def settle(self) -> None:
        """Flush this pass and wait until every held frame is written."""
        self.flush()
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._writer)

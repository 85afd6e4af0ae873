"""Commit the journal (and the ledger) once per event-loop pass, then write every peer's queued frames."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from broker.journal import Journal

if TYPE_CHECKING:
    from broker.billing import Billing
    from broker.peer import Peer


class Outbox:
    def __init__(self, journal: Journal, billing: Billing | None = None) -> None:
        self._journal = journal
        self._billing = billing
        # Workers are written first: a `work` frame is on the critical path of
        # an intent, the `accepted` that goes out with it is not, and on a busy
        # machine waking the client first can delay the worker by a time slice.
        self._workers: list[Peer] = []
        self._clients: list[Peer] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None  # get_running_loop() costs a getpid() call

    def send(self, peer: Peer | None, data: bytes) -> None:
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

    def flush(self) -> None:
        self._scheduled = False
        self._journal.commit()
        if self._billing is not None:
            self._billing.commit()
        for peers in (self._workers, self._clients):
            for peer in peers:
                peer.marked = False
                peer.write_queued()
        self._workers, self._clients = [], []

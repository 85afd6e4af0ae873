"""Commit the journal once per event-loop pass, then write every peer's queued frames."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from broker.journal import Journal

if TYPE_CHECKING:
    from broker.peer import Peer


class Outbox:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._peers: list[Peer] = []
        self._scheduled = False

    def send(self, peer: Peer | None, data: bytes) -> None:
        """Queue ``data`` for ``peer``; it is written at the end of this pass,
        after everything journaled so far is committed. ``peer`` None (a client
        gone since it submitted) still schedules the commit."""
        if peer is not None and not peer.closed:
            peer.queued.append(data)
            if not peer.marked:
                peer.marked = True
                self._peers.append(peer)
        if not self._scheduled:
            self._scheduled = True
            # call_soon runs after every callback already ready in this pass,
            # so all writes of the pass share one commit.
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        self._journal.commit()
        peers, self._peers = self._peers, []
        for peer in peers:
            peer.marked = False
            peer.write_queued()

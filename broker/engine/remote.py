"""A client connected to another broker of the realm, seen as a peer.

A job that runs here for a client elsewhere reports to a :class:`RemotePeer`:
the outbox queues its frames like any peer's and, after the pass's commit,
hands them to the link, which adds them to that broker's inbox in the
round's single call. So the dispatcher sends a token or a result the same way
wherever its client is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.protocol import Msg, encode

if TYPE_CHECKING:
    from broker.engine.link import Link
    from broker.peer import Writer


class RemotePeer:
    role = "client"
    closed = False
    address: str | None = None

    def __init__(self, home: str, guid: str, link: Link, outbox: Writer) -> None:
        self.home = home  # the broker the client is connected to
        self.guid = guid
        self.queued: list[bytes] = []
        self.marked = False
        self._link = link
        self._outbox = outbox

    def send(self, msg: Msg) -> None:
        self._outbox.send(self, encode(msg))

    def send_raw(self, data: bytes) -> None:
        self._outbox.send(self, data)

    def take_queued(self) -> list[bytes]:
        frames, self.queued = self.queued, []
        return frames

    def write_queued(self) -> None:
        self.write(self.take_queued())

    def write(self, frames: list[bytes]) -> None:
        if frames:
            self._link.call({"op": "fwd", "to": self.home, "gs": [self.guid]}, [b"\n".join(frames)], keep=True)

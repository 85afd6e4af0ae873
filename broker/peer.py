"""One WebSocket connection (client or worker) and how frames leave it.

Frames are never written one by one: :meth:`Peer.send` queues a frame and the
:class:`broker.outbox.Outbox` writes each peer's queue at the end of the
event-loop pass, after committing the journal, as one transport write. Under
load that is one syscall per peer per pass instead of one per frame, it keeps
each peer's frames in order, and a frame never leaves before the journal
writes it depends on. Sends never await, so one slow reader cannot stall a
send to anyone else.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterator
from typing import Protocol

from aiohttp import web

from broker.protocol import Challenge, Msg, encode

CLOSE_TIMEOUT_S = 2.0  # how long a close waits for the peer's answer

# A peer whose unread output passes this is too slow for a realm bus: drop it
# rather than let the broker's memory grow without bound.
MAX_UNREAD_BYTES = 64 * 1024 * 1024

_TEXT_FIN = 0x81  # FIN + text opcode; server frames are never masked (RFC 6455 5.1)
_pack1 = struct.Struct("!BB").pack
_pack2 = struct.Struct("!BBH").pack
_pack3 = struct.Struct("!BBQ").pack


def frame_header(length: int) -> bytes:
    if length < 126:
        return _pack1(_TEXT_FIN, length)
    if length < 65536:
        return _pack2(_TEXT_FIN, 126, length)
    return _pack3(_TEXT_FIN, 127, length)


class Recipient(Protocol):
    """What frames can be sent to: a :class:`Peer` here, or a client on another
    broker of the realm (broker.engine.remote.RemotePeer)."""

    role: str
    closed: bool
    address: str | None
    queued: list[bytes]
    marked: bool

    def send(self, msg: Msg) -> None: ...
    def send_raw(self, data: bytes) -> None: ...
    def take_queued(self) -> list[bytes]: ...
    def write_queued(self) -> None: ...
    def write(self, frames: list[bytes]) -> None: ...


class Writer(Protocol):
    """Where a peer's frames go (broker.outbox.Outbox): queued per pass, written after the commit."""

    def send(self, peer: Recipient, data: bytes) -> None: ...
    async def settle(self) -> None: ...


class Peer:
    # New intents accepted on this connection so far. A client that reconnects
    # resubmits its unfinished guids before anything new (mtor_cli.client), so
    # a connection with none yet may be resubmitting (broker.dispatch).
    fresh_accepted = 0

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, role: str, outbox: Writer) -> None:
        self.ws = ws
        self.role = role  # "client" | "worker"
        self.transport = request.transport
        self.remote = request.remote or ""
        self.nonce = secrets.token_hex(16)
        self.nonce_spent = False
        self.address: str | None = None  # set once the handshake succeeds
        self.closed = False
        self.queued: list[bytes] = []  # frames for the end of this pass
        self.marked = False  # already on the outbox's list for this pass
        self._outbox = outbox

    @property
    def authenticated(self) -> bool:
        return self.address is not None

    def send(self, msg: Msg) -> None:
        self._outbox.send(self, encode(msg))

    def send_raw(self, data: bytes) -> None:
        self._outbox.send(self, data)

    def take_queued(self) -> list[bytes]:
        frames, self.queued = self.queued, []
        return frames

    def write_queued(self) -> None:
        frames, self.queued = self.queued, []
        self.write(frames)

    def write(self, frames: list[bytes]) -> None:
        """Write ``frames`` now, as one transport write."""
        if self.closed or not frames:
            return
        transport = self.transport
        if transport is None or transport.is_closing() or self.ws.closed:
            self.closed = True
            return
        if transport.get_write_buffer_size() > MAX_UNREAD_BYTES:
            self.closed = True
            transport.close()
            return
        parts: list[bytes] = []
        for data in frames:
            parts.append(frame_header(len(data)))
            parts.append(data)
        transport.writelines(parts)

    async def close(self, code: int = 1000, message: bytes = b"", *, settle: bool = True) -> None:
        """Close after everything queued so far has been written (``settle``;
        a stopping broker settles the outbox itself, for a bounded time)."""
        if settle:
            await self._outbox.settle()
        self.closed = True
        if not self.ws.closed:
            await self.ws.close(code=code, message=message)


async def open_peer(request: web.Request, role: str, outbox: Writer, max_msg_size: int, realm: str) -> Peer:
    """Accept a /ws/client or /ws/worker upgrade and send the login challenge."""
    ws = web.WebSocketResponse(compress=False, max_msg_size=max_msg_size, autoping=True, timeout=CLOSE_TIMEOUT_S)
    await ws.prepare(request)
    peer = Peer(ws, request, role, outbox)
    peer.send(Challenge(nonce=peer.nonce, realm=realm))
    return peer


class Peers:
    """Every open socket of the broker, by role."""

    def __init__(self) -> None:
        self.clients: set[Peer] = set()
        self.workers: set[Peer] = set()

    def add(self, peer: Peer) -> None:
        (self.workers if peer.role == "worker" else self.clients).add(peer)

    def discard(self, peer: Peer) -> None:
        (self.workers if peer.role == "worker" else self.clients).discard(peer)

    def __iter__(self) -> Iterator[Peer]:
        return iter([*self.workers, *self.clients])

    def authenticated(self) -> list[Peer]:
        return [p for p in self if p.authenticated]

    def users(self) -> int:
        """Distinct addresses logged in on client sockets."""
        return len({p.address for p in self.clients if p.address})

"""The /ws/client socket: handshake, then queries, cancels and subscriptions."""

from __future__ import annotations

from aiohttp import web

from broker import handshake
from broker.frames import busy, internal_error, messages, not_authenticated
from broker.parts import Parts
from broker.peer import Peer, open_peer
from broker.protocol import (
    Cancel,
    Error,
    Hello,
    MtorError,
    Ping,
    Pong,
    ProtocolError,
    SubmitQuery,
    Subscribe,
    Welcome,
    client_decoder,
)

_decoder = client_decoder()


async def client_socket(parts: Parts, request: web.Request) -> web.StreamResponse:
    cfg = parts.config
    pending = parts.gate.admit(request.remote or "")
    if isinstance(pending, MtorError):
        return busy(pending)
    try:
        peer = await open_peer(request, "client", parts.outbox, cfg.transport_max_msg_size, cfg.realm)
        pending.watch(peer)
        parts.peers.add(peer)
        try:
            async for msg in messages(peer, _decoder, cfg.max_frame_bytes, cfg.max_login_frame_bytes, parts.metrics):
                if isinstance(msg, ProtocolError):
                    continue  # answered; a client's bad frame refers to nothing running
                try:
                    keep = await _handle(parts, peer, msg)
                except Exception as exc:
                    internal_error(peer, exc, getattr(msg, "guid", None))
                    continue
                if peer.authenticated:
                    pending.done()
                if not keep:
                    await peer.close(code=4001, message=b"bad signature")
                    break
        finally:
            peer.closed = True
            parts.peers.discard(peer)
            parts.subs.unsubscribe(peer)
            parts.subs.changed("stats")
    finally:
        pending.done()
    return peer.ws


async def _handle(parts: Parts, peer: Peer, msg: object) -> bool:
    """Act on one message; False closes the connection."""
    if isinstance(msg, Hello):
        reused = peer.nonce_spent or msg.nonce != peer.nonce
        address = handshake.verify(peer, msg.address, msg.nonce, msg.signature, "client")
        if address is None:
            peer.send(handshake.bad_signature(peer, reused))
            return False
        if parts.sysop.refused(peer, address):
            return True  # answered `banned`; the socket is closing
        peer.address = address
        peer.send(Welcome(address=address, realm=parts.config.realm))
        parts.subs.changed("stats")
        return True
    if not peer.authenticated:
        not_authenticated(peer, "hello", getattr(msg, "guid", None))
        return True
    if isinstance(msg, SubmitQuery):
        if await parts.limits.allow(peer, msg):
            await parts.dispatcher.submit(peer, msg)
    elif isinstance(msg, Cancel):
        await parts.dispatcher.cancel(peer, msg.guid)
    elif isinstance(msg, Subscribe):
        problem = parts.subs.subscribe(peer, msg.topics)
        if problem is not None:
            peer.send(
                Error(code="bad_params", message=problem, hint="topics: stats, workers, queue, intents, ledger")
            )
    elif isinstance(msg, Ping):
        peer.send(Pong(nonce=msg.nonce, ts=msg.ts))
    # A Pong needs no answer.
    return True

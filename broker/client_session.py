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
    LedgerTerms,
    MtorError,
    Ping,
    Pong,
    ProtocolError,
    SubmitQuery,
    Subscribe,
    Welcome,
    client_decoder,
)
from broker.sysop import BANNED_CLOSE

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
                if isinstance(msg, SubmitQuery) and peer.authenticated:
                    try:
                        await _submit(parts, peer, msg)
                    except Exception as exc:
                        internal_error(peer, exc, msg.guid)
                    continue
                try:
                    close = await _handle(parts, peer, msg)
                except Exception as exc:
                    internal_error(peer, exc, getattr(msg, "guid", None))
                    continue
                if peer.authenticated:
                    pending.done()
                if close is not None:
                    # Closed here, by the socket's own reader: a close from another
                    # task races the reader, and the peer may then miss the code.
                    await peer.close(code=close[0], message=close[1])
                    break
        finally:
            peer.closed = True
            parts.peers.discard(peer)
            parts.subs.unsubscribe(peer)
            parts.subs.changed("stats")
    finally:
        pending.done()
    return peer.ws


async def _submit(parts: Parts, peer: Peer, query: SubmitQuery) -> None:
    """Route (when the query names no intent: perhaps the recogniser, on its thread;
    this connection's next frames wait, so they keep their order) and submit."""
    if not await parts.limits.allow(peer, query):
        return
    query, routing = await parts.router.resolve(query)
    await parts.dispatcher.submit(peer, query, None if routing is None else routing.wire())


async def _handle(parts: Parts, peer: Peer, msg: object) -> tuple[int, bytes] | None:
    """Act on one message; a (close code, reason) closes the connection."""
    if isinstance(msg, Hello):
        reused = peer.nonce_spent or msg.nonce != peer.nonce
        address = handshake.verify(peer, msg.address, msg.nonce, msg.signature, "client")
        if address is None:
            peer.send(handshake.bad_signature(peer, reused))
            return handshake.BAD_SIGNATURE_CLOSE, b"bad signature"
        refusal = parts.sysop.refusal("client", address)
        if refusal is not None:
            peer.send(refusal)
            return BANNED_CLOSE, b"banned"
        peer.address = address
        terms = parts.billing.terms(address) if parts.billing is not None else None
        ledger = LedgerTerms(**terms) if terms is not None else None
        peer.send(Welcome(address=address, realm=parts.config.realm, ledger=ledger))
        parts.subs.changed("stats")
        return None
    if not peer.authenticated:
        not_authenticated(peer, "hello", getattr(msg, "guid", None))
        return None
    if isinstance(msg, Cancel):
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
    return None

"""The /ws/client socket: handshake, then queries, cancels and subscriptions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from broker import handshake
from broker.frames import internal_error, messages, not_authenticated
from broker.peer import Peer, open_peer
from broker.protocol import (
    Cancel,
    Error,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    SubmitQuery,
    Subscribe,
    Welcome,
    client_decoder,
)

if TYPE_CHECKING:
    from broker.server import BrokerServer

_decoder = client_decoder()


async def client_socket(broker: BrokerServer, request: web.Request) -> web.WebSocketResponse:
    peer = await open_peer(broker, request, "client")
    broker.clients.add(peer)
    try:
        async for msg in messages(peer, _decoder, broker.config.max_frame_bytes, broker.metrics):
            if isinstance(msg, ProtocolError):
                continue  # answered; a client's bad frame refers to nothing running
            try:
                keep = _handle(broker, peer, msg)
            except Exception as exc:
                internal_error(peer, exc, getattr(msg, "guid", None))
                continue
            if not keep:
                await peer.close(code=4001, message=b"bad signature")
                break
    finally:
        peer.closed = True
        broker.clients.discard(peer)
        broker.subs.unsubscribe(peer)
        broker.subs.changed("stats")
    return peer.ws


def _handle(broker: BrokerServer, peer: Peer, msg: object) -> bool:
    """Act on one message; False closes the connection."""
    if isinstance(msg, Hello):
        reused = peer.nonce_spent or msg.nonce != peer.nonce
        address = handshake.verify(peer, msg.address, msg.nonce, msg.signature, "client")
        if address is None:
            peer.send(handshake.bad_signature(peer, reused))
            return False
        if broker.sysop.refused(peer, address):
            return True  # answered `banned`; the socket is closing
        peer.address = address
        peer.send(Welcome(address=address, realm=broker.config.realm))
        broker.subs.changed("stats")
        return True
    if not peer.authenticated:
        not_authenticated(peer, "hello", getattr(msg, "guid", None))
        return True
    if isinstance(msg, SubmitQuery):
        if broker.limits.allow(peer, msg):
            broker.dispatcher.submit(peer, msg)
    elif isinstance(msg, Cancel):
        broker.dispatcher.cancel(peer, msg.guid)
    elif isinstance(msg, Subscribe):
        problem = broker.subs.subscribe(peer, msg.topics)
        if problem is not None:
            peer.send(
                Error(code="bad_params", message=problem, hint="topics: stats, workers, queue, intents, ledger")
            )
    elif isinstance(msg, Ping):
        peer.send(Pong(nonce=msg.nonce, ts=msg.ts))
    # A Pong needs no answer.
    return True

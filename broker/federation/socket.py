"""The /ws/realm socket: a peer realm that dials in to have its intents served.

Its first frame must be a ``realm_hello`` in an envelope signed by a realm
this one has pinned (``mtor federation peer add``), addressed to this realm,
fresh and never seen; anything else is answered with an unsigned
``error{code}`` and the socket is closed (4001). Later envelopes are checked
the same way, and one that fails ends the connection: only the peer can
write on it, so it misbehaves. Until its hello the socket counts against the
broker's bounds on sockets that have not logged in (broker/gate.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
from aiohttp import WSMsgType, web

from broker.federation.envelope import FrameRefused, Pinned
from broker.federation.serving import Origin, OriginPeer, Origins
from broker.frames import busy
from broker.peer import CLOSE_TIMEOUT_S
from broker.protocol import Cancel, Error, MtorError, Ping, Pong, RealmHello, origin_decoder

if TYPE_CHECKING:
    from broker.config import BrokerConfig
    from broker.federation.context import Context
    from broker.federation.store import PeerRecord
    from broker.gate import Gate
    from broker.metrics import BrokerMetrics
    from broker.outbox import Outbox

REFUSED_CLOSE = 4001
HEARTBEAT_S = 15.0  # WebSocket pings: a vanished origin is noticed, and its intents here cancelled

_frames = origin_decoder()


async def realm_socket(
    request: web.Request,
    config: BrokerConfig,
    gate: Gate,
    outbox: Outbox,
    metrics: BrokerMetrics,
    context: Callable[[], tuple[Context, Origins] | None],
    peer_of: Callable[[str], tuple[PeerRecord, Pinned] | None],
) -> web.StreamResponse:
    """``context()``: the federation's context and origins, None while this realm
    has no peers; ``peer_of(address)``: a pinned peer's record and key."""
    pending = gate.admit(request.remote or "")
    if isinstance(pending, MtorError):
        return busy(pending)
    try:
        ws = web.WebSocketResponse(
            compress=False, max_msg_size=config.transport_max_msg_size, autoping=True, heartbeat=HEARTBEAT_S,
            timeout=CLOSE_TIMEOUT_S,
        )
        await ws.prepare(request)
        active = context()
        if active is None:
            await ws.send_str(msgspec.json.encode(Error(
                code="not_peer", message="this realm does not federate", hint="it has no pinned peers",
            )).decode())
            await ws.close(code=REFUSED_CLOSE, message=b"not a peer")
            return ws
        ctx, origins = active
        peer = OriginPeer(ws, request, outbox, origins)
        pending.watch(peer)
        origin: Origin | None = None
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    if frame.type == WSMsgType.BINARY:
                        continue
                    break
                try:
                    if origin is None:
                        origin = _hello(ctx, origins, peer, frame.data, peer_of)
                        pending.done()
                    else:
                        await _envelope(ctx, origins, origin, frame.data)
                except FrameRefused as exc:
                    metrics.bad_frame("realm", exc.code)
                    peer.send(exc.to_error())
                    await peer.close(code=REFUSED_CLOSE, message=exc.code.encode())
                    break
        finally:
            peer.closed = True
            if origin is not None:
                origins.left(origin)
    finally:
        pending.done()
    return ws


def _hello(
    ctx: Context,
    origins: Origins,
    peer: OriginPeer,
    data: str,
    peer_of: Callable[[str], tuple[PeerRecord, Pinned] | None],
) -> Origin:
    def pinned(address: str) -> Pinned | None:
        found = peer_of(address)
        return None if found is None else found[1]

    opened = ctx.opener.open(data, pinned)
    first = _frames.decode(opened.frames[0]) if opened.frames else None
    if not isinstance(first, RealmHello):
        raise FrameRefused("not_authenticated", "the first frame must be realm_hello", "")
    found = peer_of(opened.origin)
    assert found is not None  # the opener just found it
    return origins.welcome(peer, found[0], found[1])


async def _envelope(ctx: Context, origins: Origins, origin: Origin, data: str) -> None:
    address = origin.address.lower()
    found = origin.peer

    def pinned(sender: str) -> Pinned | None:  # only the welcomed realm may write here
        return origin.pinned if sender.lower() == address else None

    opened = ctx.opener.open(data, pinned)
    for raw in opened.frames:
        try:
            msg = _frames.decode(raw)
        except msgspec.MsgspecError as exc:
            found.send(Error(code="invalid_message", message=f"a bad frame: {exc}", hint="see docs/federation.md"))
            continue
        if isinstance(msg, Cancel):
            await origins.cancel(origin, msg.guid)
        elif isinstance(msg, Ping):
            found.send(Pong(nonce=msg.nonce, ts=msg.ts))
        elif isinstance(msg, (Pong, RealmHello)):
            continue
        else:
            await origins.received(origin, msg, bytes(raw), opened.proof)


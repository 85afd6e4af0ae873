"""Reading frames off a socket: every bad frame becomes an `error`, never a closed connection."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from broker.metrics import BrokerMetrics
from broker.peer import Peer
from broker.protocol import Decoder, Error, MtorError, ProtocolError

log = logging.getLogger("mtor.broker")

TOO_BIG_CLOSE = 1009  # RFC 6455: message too big


async def messages(
    peer: Peer, decoder: Decoder, max_frame_bytes: int, max_login_frame_bytes: int, metrics: BrokerMetrics
) -> AsyncIterator[Any]:
    """Yield each decoded message; answer bad frames with `error` and carry on.

    A frame with a known `type` that failed its checks is answered and then
    yielded as its :class:`ProtocolError`, so the socket's handler can end
    what it refers to (a worker's malformed `result` fails that attempt).
    Before login a frame may be at most ``max_login_frame_bytes``: a bigger
    one is answered and the socket closed (it proves nothing and costs memory)."""
    async for frame in peer.ws:
        if frame.type == WSMsgType.TEXT:
            data: str = frame.data
            limit = max_frame_bytes if peer.authenticated else max_login_frame_bytes
            # len(str) counts characters; only a frame that could be too big pays for encoding.
            if len(data) * 4 > limit and len(data.encode()) > limit:
                _reject(
                    peer,
                    metrics,
                    ProtocolError(
                        "frame_too_large",
                        f"the frame is {len(data.encode())} bytes; the limit is {limit}"
                        + ("" if peer.authenticated else " before login"),
                        "send smaller attachments" if peer.authenticated else "log in first (hello/register)",
                    ),
                    None,
                )
                if not peer.authenticated:
                    await peer.close(code=TOO_BIG_CLOSE, message=b"frame too large before login")
                    return
                continue
            try:
                msg = decoder.decode(data)
            except ProtocolError as exc:
                _reject(peer, metrics, exc, exc.guid)
                if exc.kind is not None:
                    yield exc
                continue
            yield msg
        elif frame.type == WSMsgType.BINARY:
            _reject(
                peer,
                metrics,
                ProtocolError("binary_frame", "binary frames are not accepted", "send JSON text frames"),
                None,
            )
        elif frame.type == WSMsgType.ERROR:
            return


def busy(refusal: MtorError) -> web.Response:
    """An upgrade refused before it happens (broker/gate.py): HTTP 503 with the error."""
    return web.json_response(
        {"error": refusal.to_dict()}, status=503, headers={"Retry-After": str(math.ceil(refusal.detail["retry_after"]))}
    )


def _reject(peer: Peer, metrics: BrokerMetrics, exc: ProtocolError, guid: str | None) -> None:
    metrics.bad_frame(peer.role, exc.code)
    peer.send(exc.to_error(guid))


def internal_error(peer: Peer, exc: BaseException, guid: str | None) -> None:
    """A bug in the broker: log it, tell the peer, keep the connection."""
    log.exception("internal error on a %s socket: %s", peer.role, exc)
    peer.send(
        Error(
            code="internal",
            message=f"the broker hit an unexpected error ({type(exc).__name__})",
            hint="try again; if it keeps happening, report it with the broker's log",
            guid=guid,
        )
    )


def not_authenticated(peer: Peer, hello: str, guid: str | None = None) -> None:
    peer.send(
        Error(
            code="not_authenticated",
            message=f"send `{hello}` with the signed challenge first",
            hint="answer the broker's `challenge{nonce}` with a signature of it",
            guid=guid,
        )
    )

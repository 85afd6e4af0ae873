"""Reading frames off a socket: every bad frame becomes an `error`, never a closed connection."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType

from broker.metrics import BrokerMetrics
from broker.peer import Peer
from broker.protocol import Decoder, Error, ProtocolError

log = logging.getLogger("mtor.broker")


async def messages(
    peer: Peer, decoder: Decoder, max_frame_bytes: int, metrics: BrokerMetrics
) -> AsyncIterator[Any]:
    """Yield each decoded message; answer bad frames with `error` and carry on.

    A frame with a known `type` that failed its checks is answered and then
    yielded as its :class:`ProtocolError`, so the socket's handler can end
    what it refers to (a worker's malformed `result` fails that attempt)."""
    async for frame in peer.ws:
        if frame.type == WSMsgType.TEXT:
            data: str = frame.data
            # len(str) counts characters; only a frame that could be too big pays for encoding.
            if len(data) * 4 > max_frame_bytes and len(data.encode()) > max_frame_bytes:
                _reject(
                    peer,
                    metrics,
                    ProtocolError(
                        "frame_too_large",
                        f"the frame is {len(data.encode())} bytes; the limit is {max_frame_bytes}",
                        "send smaller attachments",
                    ),
                    None,
                )
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

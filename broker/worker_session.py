"""The /ws/worker socket: handshake and registration, then the worker's answers."""

from __future__ import annotations

import time

from aiohttp import web

from broker import handshake
from broker.frames import busy, internal_error, messages, not_authenticated
from broker.parts import Parts
from broker.peer import Peer, open_peer
from broker.protocol import (
    Drain,
    Error,
    Failed,
    MtorError,
    Ping,
    Pong,
    Progress,
    ProtocolError,
    Register,
    Token,
    Unavailable,
    Welcome,
    WorkResult,
    worker_decoder,
)
from broker.registry import WorkerEntry
from broker.sysop import BANNED_CLOSE

_decoder = worker_decoder()
MAX_SLOTS = 1024


async def worker_socket(parts: Parts, request: web.Request) -> web.StreamResponse:
    cfg = parts.config
    pending = parts.gate.admit(request.remote or "")
    if isinstance(pending, MtorError):
        return busy(pending)
    try:
        peer = await open_peer(request, "worker", parts.outbox, cfg.transport_max_msg_size, cfg.realm)
        pending.watch(peer)
        parts.peers.add(peer)
        entry: WorkerEntry | None = None
        try:
            async for msg in messages(peer, _decoder, cfg.max_frame_bytes, cfg.max_login_frame_bytes, parts.metrics):
                if isinstance(msg, ProtocolError):
                    if entry is not None:
                        msg = _refused_answer(entry, msg)
                    if msg is None:
                        continue
                if entry is None:
                    if not isinstance(msg, Register):
                        not_authenticated(peer, "register", getattr(msg, "guid", None))
                        continue
                    entry, close = await _register(parts, peer, msg)
                    if close is not None:
                        await peer.close(code=close[0], message=close[1])  # by the reader: see client_session
                        break
                    if entry is not None:
                        pending.done()
                    continue
                try:
                    parts.trust.before(entry, msg)
                    _handle(parts, entry, msg)
                except Exception as exc:
                    internal_error(peer, exc, getattr(msg, "guid", None))
        finally:
            peer.closed = True
            parts.peers.discard(peer)
            if entry is not None:
                parts.trust.left(entry)
                parts.dispatcher.worker_left(entry)
    finally:
        pending.done()
    return peer.ws


async def _register(parts: Parts, peer: Peer, msg: Register) -> tuple[WorkerEntry | None, tuple[int, bytes] | None]:
    """The registered worker, or a (close code, reason) to close the socket with."""
    reused = peer.nonce_spent or msg.nonce != peer.nonce
    address = handshake.verify(peer, msg.address, msg.nonce, msg.signature, "worker")
    if address is None:
        peer.send(handshake.bad_signature(peer, reused))
        return None, (handshake.BAD_SIGNATURE_CLOSE, b"bad signature")
    if not 1 <= msg.slots <= MAX_SLOTS or not msg.capabilities:
        # The identity is proven; a bad registration can be sent again on this connection.
        peer.nonce_spent = False
        peer.send(
            Error(
                code="bad_params",
                message=f"register needs 1..{MAX_SLOTS} slots and at least one capability",
                hint="e.g. slots=1, capabilities=[{intent: chat, models: [...]}]; sign the same nonce again",
            )
        )
        return None, None
    refusal = parts.sysop.refusal("worker", address)
    if refusal is not None:
        peer.send(refusal)
        return None, (BANNED_CLOSE, b"banned")
    try:
        record = await parts.trust.record_of(address)
    except Unavailable as exc:  # the realm's database is down: this worker comes back later
        peer.send(exc.to_error())
        return None, (1013, b"try again later")
    peer.address = address
    entry = parts.registry.add(peer, address, msg.capabilities, msg.slots, msg.name, msg.version)
    parts.trust.joined(entry, record)
    peer.send(Welcome(address=address, realm=parts.config.realm, worker_id=entry.id))
    parts.dispatcher.worker_joined(entry)
    return entry, None


def _refused_answer(entry: WorkerEntry, error: ProtocolError) -> Failed | None:
    """A `result` or `failed` the socket refused (a negative token count, say)
    still ends that attempt: as a failure of this worker, never billed, and
    the intent goes to another worker at once instead of at its timeout."""
    if error.kind not in ("result", "failed") or error.guid is None or error.guid not in entry.running:
        return None
    return Failed(guid=error.guid, code="invalid_message", message=error.message, retryable=True)


def _handle(parts: Parts, entry: WorkerEntry, msg: object) -> None:
    dispatcher = parts.dispatcher
    if isinstance(msg, (Token, Progress)):
        known = dispatcher.on_token(entry, msg)
    elif isinstance(msg, WorkResult):
        known = dispatcher.on_result(entry, msg)
    elif isinstance(msg, Failed):
        known = dispatcher.on_failed(entry, msg)
    elif isinstance(msg, Pong):
        sent = entry.ping_sent.pop(msg.nonce, None)
        if sent is not None:
            entry.health.pong((time.perf_counter() - sent) * 1000)
        return
    elif isinstance(msg, Ping):
        entry.peer.send(Pong(nonce=msg.nonce, ts=msg.ts))
        return
    elif isinstance(msg, Drain):
        dispatcher.worker_draining(entry)
        return
    else:  # a second register
        entry.peer.send(
            Error(code="invalid_message", message="this worker is already registered", hint="reconnect to register again")
        )
        return
    if not known:
        guid = msg.guid
        entry.peer.send(
            Error(
                code="unknown_guid",
                message=f"intent {guid!r} is not running on this worker",
                hint="it was cancelled, timed out or given to another worker; drop it",
                guid=guid,
            )
        )

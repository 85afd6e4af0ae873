"""This realm as the origin: one outbound connection to a peer realm that serves its intents.

The link dials the peer's ``/ws/realm`` (reconnecting with backoff), says
``realm_hello`` in a signed envelope and waits for the peer's signed
``realm_welcome``: the peer must have pinned this realm too, and the welcome
must be signed by the key pinned here. The peer then joins the registry as
one :class:`~broker.federation.entry.PeerEntry`, and the dispatcher treats it
like a worker: ``work`` frames for it become ``forward`` frames (with a
forward id instead of the user's guid, the price this realm offers, and the
asker's address only if they opted in), ``cancel`` and heartbeat ``ping``
pass through, and the peer's tokens, progress, results and errors come back
as a worker's would. Each receipt is audited (broker.federation.tally) and
acknowledged with a signed cumulative total.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import ssl
import time
from collections import Counter, deque
from typing import Any

import aiohttp
import msgspec

from broker.federation.context import Context
from broker.federation.entry import NOT_NOW, PeerEntry, PeerHealth
from broker.federation.envelope import FrameRefused, Pinned, Proof, Sealer
from broker.federation.store import PeerRecord
from broker.peer import Peer
from broker.protocol import (
    Ack,
    Cancel,
    Error,
    Failed,
    Forward,
    Msg,
    Ping,
    Pong,
    Pool,
    Progress,
    RealmHello,
    RealmWelcome,
    Receipt,
    Result,
    Telemetry,
    Token,
    WorkResult,
    encode,
    serving_decoder,
)

log = logging.getLogger("mtor.federation")

REALM_PATH = "/ws/realm"
CONNECT_TIMEOUT_S = 10.0
RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 30.0
REFUSED_WAIT_S = 1.0  # at least this long before dialling a peer that refused us again
MAX_FRAME_BYTES = 64 * 1024 * 1024

# A peer's error codes that say the request itself is bad, or that this realm
# may not have it now: no other attempt would do better.
FINAL = frozenset(
    {"bad_params", "bad_attachment", "prompt_too_long", "peer_credit_exceeded", "insufficient_funds", "price_exceeded"}
)

_serving = serving_decoder()


class _Head(msgspec.Struct):
    type: str
    guid: str | None = None


_heads = msgspec.json.Decoder(_Head)


def forward_id(origin: str, guid: str) -> str:
    """The id a forwarded intent has at the peer: stable for the user's guid
    (a retry is the same intent there, never charged twice) and telling the
    peer nothing about it."""
    return hashlib.sha256(f"{origin.lower()}:{guid}".encode()).hexdigest()[:32]


def endpoint(url: str) -> str:
    url = url.rstrip("/")
    if url.startswith("http"):
        url = "ws" + url[len("http") :]
    return url if url.endswith(REALM_PATH) else url + REALM_PATH


def tls_context(url: str) -> ssl.SSLContext | None:
    """The system's CAs plus $MTOR_CA_FILE (a self-signed peer's certificate), for wss://."""
    if not url.startswith("wss:"):
        return None
    return ssl.create_default_context(cafile=os.environ.get("MTOR_CA_FILE"))


class PeerWorker(Peer):
    """The peer realm's end of the dispatcher's frames: what a worker's socket is for a worker.

    The outbox hands it the frames of each event-loop pass after the journal's
    commit, as it does every socket; the link turns them into one signed envelope.
    """

    def __init__(self, link: PeerLink, outbox: Any) -> None:
        # Not Peer.__init__: there is no server-side socket. The dispatcher,
        # outbox, heartbeat and registry use only the attributes set here.
        self.role = "worker"
        self.remote = link.record.url
        self.address = link.record.address
        self.nonce = ""
        self.nonce_spent = True
        self.closed = False
        self.queued: list[bytes] = []
        self.marked = False
        self._outbox = outbox
        self._link = link

    def take_queued(self) -> list[bytes]:
        frames, self.queued = self.queued, []
        return frames

    def write_queued(self) -> None:
        self.write(self.take_queued())

    def write(self, frames: list[bytes]) -> None:
        if frames and not self.closed:
            self._link.outgoing(frames)

    async def close(self, code: int = 1000, message: bytes = b"", *, settle: bool = True) -> None:
        self.closed = True
        await self._link.hang_up(code, message)


class PeerLink:
    def __init__(self, ctx: Context, record: PeerRecord, pinned: Pinned) -> None:
        self.ctx = ctx
        self.record = record
        self.pinned = pinned
        self.health = PeerHealth(ctx.config)
        self.state = "connecting"  # connecting | connected | refused | unreachable | stopped
        self.since = time.time()
        self.error = ""
        self.entry: PeerEntry | None = None
        self.pool: Pool | None = None
        self.telemetry: Telemetry | None = None
        self.telemetry_at = 0.0
        self.traffic: Counter[str] = Counter()
        self._fguids: dict[str, tuple[str, int | None]] = {}  # forward id -> (user's guid, price offered)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._sealer: Sealer | None = None
        self._out: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._proof: tuple[Proof, str] | None = None  # the last envelope's stored proof and its reference

    @property
    def peer(self) -> str:
        return self.record.address

    # --- lifecycle ------------------------------------------------------------

    def start(self, session: aiohttp.ClientSession) -> None:
        self._task = asyncio.create_task(self._run(session), name=f"mtor-federation-{self.record.name}")

    async def stop(self) -> None:
        self.state = "stopped"
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def hang_up(self, code: int, message: bytes) -> None:
        """Close the connection (the heartbeat gave up on the peer); the link dials again."""
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close(code=code, message=message)

    async def _run(self, session: aiohttp.ClientSession) -> None:
        delay = RECONNECT_INITIAL_S
        while True:
            welcomed = False
            try:
                welcomed = await self._connection(session)
            except asyncio.CancelledError:
                raise
            except FrameRefused as exc:
                self._set("refused", f"{exc.message} [{exc.code}]")
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self._set("unreachable", str(exc) or type(exc).__name__)
            except Exception as exc:  # a bug must not end the link for good: log, count, dial again
                log.exception("federation link to %s failed", self.record.name)
                self._set("unreachable", f"internal error: {type(exc).__name__}: {exc}")
            if welcomed:
                delay = RECONNECT_INITIAL_S
            wait = delay * random.uniform(0.8, 1.2)
            if self.state == "refused":
                wait = max(wait, REFUSED_WAIT_S)
            await asyncio.sleep(wait)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _set(self, state: str, error: str = "") -> None:
        if state != self.state or error != self.error:
            if error:
                log.warning("federation: peer %s %s: %s", self.record.name, state, error)
            self.state, self.error, self.since = state, error, time.time()
            self.ctx.subs.changed("stats")

    async def _connection(self, session: aiohttp.ClientSession) -> bool:
        """One connection: handshake, then serve until it closes. True if the peer welcomed us."""
        ctx = self.ctx
        url = endpoint(self.record.url)
        ws = await asyncio.wait_for(
            session.ws_connect(url, max_msg_size=MAX_FRAME_BYTES, ssl=tls_context(url) or True, autoping=True,
                               heartbeat=max(5.0, ctx.config.heartbeat_s * 3)),
            CONNECT_TIMEOUT_S,
        )
        self._ws = ws
        self._sealer = sealer = Sealer(ctx.key, self.record.address)
        writer = asyncio.create_task(self._write(ws))
        entry: PeerEntry | None = None
        try:
            await ws.send_frame(sealer.seal([encode(RealmHello(realm=ctx.config.realm))]), aiohttp.WSMsgType.TEXT)
            welcome = await self._welcome(ws)
            entry = self.entry = PeerEntry(
                ctx.registry.new_id("p", self.record.address),
                PeerWorker(self, ctx.outbox),
                ctx.key.address,
                self.record.address,
                self.record.name,
                ctx.config,
                self.health,
                ctx.realms,
                self.describe,
            )
            self.pool = welcome.pool
            entry.apply(welcome.pool)
            self._set("connected")
            log.info("federation: connected to peer %s (%s) as %s", self.record.name, welcome.realm, entry.id)
            ctx.registry.join(entry)
            ctx.dispatcher.worker_joined(entry)
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._envelope(frame.data)
                elif frame.type != aiohttp.WSMsgType.BINARY:
                    break
            self._set("unreachable", f"the peer closed the connection (code {ws.close_code})")
            return True
        finally:
            self._ws = None
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._out.clear()
            self._fguids.clear()  # late receipts are found in the store
            if entry is not None:
                entry.peer.closed = True
                self.entry = None
                ctx.dispatcher.worker_left(entry)
            await ws.close()

    async def _welcome(self, ws: aiohttp.ClientWebSocketResponse) -> RealmWelcome:
        frame = await ws.receive(timeout=CONNECT_TIMEOUT_S)
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise aiohttp.ClientError(f"the peer closed during the handshake ({frame.type.name})")
        if frame.data.startswith('{"type":"error"'):  # a refusal is not signed: we are nobody to it yet
            refusal = msgspec.json.decode(frame.data, type=Error)
            raise FrameRefused(refusal.code, refusal.message, refusal.hint)
        opened = self.ctx.opener.open(frame.data, self._pinned)
        first = _serving.decode(opened.frames[0]) if opened.frames else None
        if not isinstance(first, RealmWelcome):
            raise FrameRefused("invalid_message", "the peer's first frame is not realm_welcome", "")
        for raw in opened.frames[1:]:
            self._frame(raw, opened.proof)
        return first

    def _pinned(self, origin: str) -> Pinned | None:
        return self.pinned if origin.lower() == self.record.address.lower() else None

    # --- this realm -> the peer -----------------------------------------------

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._out:
                data = self._out.popleft()
                self.traffic["bytes_out"] += len(data)
                try:
                    await ws.send_frame(data, aiohttp.WSMsgType.TEXT)
                except (ConnectionError, RuntimeError) as exc:
                    log.warning("federation: could not write to peer %s: %s", self.record.name, exc)
                    return  # the reader sees the close too

    def _send(self, frames: list[bytes]) -> None:
        if self._sealer is None or self._ws is None:
            return
        self._out.append(self._sealer.seal(frames))
        self._wake.set()

    def outgoing(self, frames: list[bytes]) -> None:
        """The dispatcher's frames for the peer (one event-loop pass): forward, cancel, ping."""
        ctx, entry = self.ctx, self.entry
        if entry is None:
            return
        out: list[bytes] = []
        for data in frames:
            head = _heads.decode(data)
            if head.type == "work" and head.guid is not None:
                job = entry.running.get(head.guid)
                if job is None:
                    continue
                fguid = forward_id(ctx.key.address, job.guid)
                price = job.price_held if ctx.billing is not None else None
                q = job.query
                out.append(
                    encode(
                        Forward(
                            guid=fguid, intent=job.intent, prompt=q.prompt, model=q.model, attachments=q.attachments,
                            params=q.params, stream=q.stream, max_price=price,
                            user=job.user if q.share_address else None,
                        )
                    )
                )
                self._fguids[fguid] = (job.guid, price)
                ctx.store.forwarded(self.peer, fguid, job.guid, price)
                ctx.dirty()
                self.traffic["forwarded"] += 1
            elif head.type == "cancel" and head.guid is not None:
                out.append(encode(Cancel(guid=forward_id(ctx.key.address, head.guid))))
            elif head.type in ("ping", "pong", "ack"):
                out.append(data)
            # Anything else (a worker's `error`, a broadcast) means nothing to a realm.
        if out:
            self._send(out)

    # --- the peer -> this realm -----------------------------------------------

    def _envelope(self, data: str) -> None:
        self.traffic["bytes_in"] += len(data)
        try:
            opened = self.ctx.opener.open(data, self._pinned)
        except FrameRefused as exc:
            # Only the peer can write on this connection: it misbehaves. Drop it.
            self.traffic["refused_envelopes"] += 1
            log.warning("federation: refused an envelope from peer %s: %s", self.record.name, exc)
            asyncio.get_running_loop().create_task(self.hang_up(4001, exc.code.encode()))
            return
        for raw in opened.frames:
            try:
                self._frame(raw, opened.proof)
            except msgspec.MsgspecError as exc:
                self.traffic["bad_frames"] += 1
                log.warning("federation: a bad frame from peer %s: %s", self.record.name, exc)

    def _frame(self, raw: msgspec.Raw, proof: Proof) -> None:
        msg = _serving.decode(raw)
        entry = self.entry
        dispatcher = self.ctx.dispatcher
        if isinstance(msg, (Token, Progress)):
            forward = self._fguids.get(msg.guid)
            if forward is not None and entry is not None:
                msg.guid = forward[0]
                if isinstance(msg, Token):
                    self.traffic["tokens"] += 1
                dispatcher.on_token(entry, msg)
        elif isinstance(msg, Result):
            forward = self._fguids.get(msg.guid)
            if forward is not None and entry is not None:
                self.traffic["results"] += 1
                dispatcher.on_result(
                    entry,
                    WorkResult(
                        guid=forward[0], text=msg.text, attachments=msg.attachments, model=msg.model,
                        timings=msg.timings, usage=msg.usage, finish_reason=msg.finish_reason,
                    ),
                )
        elif isinstance(msg, Receipt):
            self._receipt(msg, bytes(raw), proof)
        elif isinstance(msg, Error):
            self._error(msg, entry)
        elif isinstance(msg, Pool):
            self.pool = msg
            if entry is not None:
                entry.apply(msg)
                self.ctx.registry.capabilities_changed()
                self.ctx.subs.changed("workers", "stats")
                dispatcher.pump_all()
        elif isinstance(msg, Telemetry):
            self.telemetry, self.telemetry_at = msg, time.time()
        elif isinstance(msg, Ping):
            self._send([encode(Pong(nonce=msg.nonce, ts=msg.ts))])
        elif isinstance(msg, Pong) and entry is not None:
            sent = entry.ping_sent.pop(msg.nonce, None)
            if sent is not None:
                entry.health.pong((time.perf_counter() - sent) * 1000)

    def _error(self, err: Error, entry: PeerEntry | None) -> None:
        if err.guid is None:
            log.warning("federation: peer %s says %s: %s", self.record.name, err.code, err.message)
            return
        forward = self._fguids.pop(err.guid, None)
        if forward is None or entry is None:
            return
        self.traffic["failed"] += 1
        code = err.code
        worker_code = err.detail.get("worker_code")
        if code == "worker_failed" and isinstance(worker_code, str):
            failed = Failed(guid=forward[0], code=worker_code, message=self._says(err), retryable=False)
        else:
            failed = Failed(guid=forward[0], code=code, message=self._says(err), retryable=code not in FINAL)
        if code in NOT_NOW:
            entry.saturated()
        self.ctx.dispatcher.on_failed(entry, failed)

    def _says(self, err: Error) -> str:
        return f"peer realm {self.record.name}: {err.message}" + (f" ({err.hint})" if err.hint else "")

    def _receipt(self, receipt: Receipt, frame: bytes, proof: Proof) -> None:
        ctx = self.ctx
        forward = self._fguids.pop(receipt.guid, None)
        if forward is None:
            forward = ctx.store.forward(self.peer, receipt.guid)
        if self._proof is None or self._proof[0] is not proof:  # kept once per envelope
            self._proof = (proof, ctx.store.add_proof(self.peer, proof.nonce, proof.to_json()))
        reason = ctx.tallies.audit(self.peer, receipt, frame, self._proof[1], forward[1] if forward else None,
                                   forward is not None)
        ctx.dirty()
        self.traffic["receipts"] += 1
        if reason is not None:
            self.traffic["disputed"] += 1
            log.warning("federation: disputed receipt %s from peer %s: %s; peer quarantined",
                        receipt.guid, self.record.name, reason)
            self.health.quarantine()
            ctx.subs.changed("workers", "stats")

    def ack(self) -> Ack | None:
        """The acknowledgement due (receipts booked since the last one); sent by the
        federation's tick after the store's commit."""
        return self.ctx.tallies.ack(self.peer) if self.entry is not None else None

    def send(self, msg: Msg) -> None:
        self._send([encode(msg)])

    # --- status -----------------------------------------------------------------

    def describe(self) -> dict[str, object]:
        """What /v1/workers shows of the peer beside its worker row."""
        return {"realm": self.record.address, "name": self.record.name, "url": self.record.url}

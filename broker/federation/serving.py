"""This realm serving a peer realm's intents: the other end of its link.

A peer that dialled ``/ws/realm`` and was welcomed is one *origin*. Its
``forward`` frames become intents of one user, the origin realm's address,
so the SafeQueue's round robin gives it one user's share and no more, within
its own cap (``max_queued``, per intent). Before that, a forward is refused
when no local worker serves it (never a second hop), when the origin's queue
is at its cap, or when what it owes unsettled, intents in flight included,
would pass its credit limit (``peer_credit_exceeded``).

Everything the dispatcher sends the origin leaves through
:class:`OriginPeer` as one signed envelope per event-loop pass: tokens,
progress and errors under the origin's forward id, each result followed by
its receipt (the same receipt again for a replayed one: never charged
twice). The origin gets this realm's pool (what it serves, how much room it
has for the origin now) whenever it changes, at most every quarter second,
and its telemetry every few seconds. When the origin's connection closes,
its intents still queued or running here are cancelled (the origin runs
them elsewhere) and their holds released.
"""

from __future__ import annotations

import logging
import re
import secrets
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from broker.background import Background
from broker.federation.context import Context
from broker.federation.entry import union
from broker.federation.envelope import Pinned, Proof, Sealer
from broker.federation.settlement import ack_signed_by
from broker.federation.store import PeerRecord
from broker.health import QUARANTINED
from broker.intake import Rejected
from broker.peer import Peer
from broker.protocol import (
    Ack,
    Error,
    Forward,
    Pool,
    RealmWelcome,
    Receipt,
    Result,
    SubmitQuery,
    Telemetry,
    Token,
    encode,
)

log = logging.getLogger("mtor.federation")

FORWARD_ID = re.compile(r"[0-9a-f]{32}")
TELEMETRY_S = 5.0


class _Head(msgspec.Struct):
    type: str
    guid: str | None = None


_heads = msgspec.json.Decoder(_Head)
_results = msgspec.json.Decoder(Result)
_errors = msgspec.json.Decoder(Error)
_tokens = msgspec.json.Decoder(Token)
_PASS = frozenset({"realm_welcome", "pool", "telemetry", "receipt", "ping", "pong"})


class OriginPeer(Peer):
    """The origin realm's socket. Its frames leave sealed in one envelope per pass."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, outbox: Any, origins: Origins) -> None:
        super().__init__(ws, request, "realm", outbox)
        self.origin: Origin | None = None  # set once welcomed
        self._origins = origins

    def take_queued(self) -> list[bytes]:
        frames, self.queued = self.queued, []
        if self.origin is None or not frames:
            return frames  # before the welcome: only a refusal, unsigned (we do not know who it is)
        return self._origins.outgoing(self.origin, frames)

    def write_queued(self) -> None:
        self.queued = self.take_queued()
        super().write_queued()


@dataclass
class Origin:
    """One welcomed origin realm's connection."""

    record: PeerRecord
    pinned: Pinned
    peer: OriginPeer
    sealer: Sealer
    live: dict[str, str] = field(default_factory=dict)  # forward id -> journal guid, queued or running here
    pool: Pool | None = None  # the last pool sent
    connected_at: float = field(default_factory=time.time)
    telemetry_due: float = 0.0
    counts: tuple[int, int] = (0, 0)  # completed, failed at the last telemetry
    receipts: list[Receipt] = field(default_factory=list)  # given, sent at the next tick (after the commit)
    proof: tuple[Proof, str] | None = None  # the last envelope's stored proof and its reference
    traffic: Counter[str] = field(default_factory=Counter)

    @property
    def address(self) -> str:
        return self.record.address


class Origins:
    def __init__(self, ctx: Context, background: Background) -> None:
        self.ctx = ctx
        self._background = background  # ends intents of a gone origin; nothing waits for that
        self.connected: dict[str, Origin] = {}  # lower-case address -> its connection
        self.traffic: dict[str, Counter[str]] = {}  # lower-case address -> counts, across connections

    # --- the connection -----------------------------------------------------

    def welcome(self, peer: OriginPeer, record: PeerRecord, pinned: Pinned) -> Origin:
        ctx = self.ctx
        key = record.address.lower()
        old = self.connected.pop(key, None)
        if old is not None:  # a new connection replaces the old one
            self.left(old)
            old.peer.closed = True
        origin = Origin(record, pinned, peer, Sealer(ctx.key, record.address))
        origin.traffic = self.traffic.setdefault(key, Counter())
        peer.address = record.address
        peer.origin = origin
        self.connected[key] = origin
        origin.pool = self.pool_for(origin)
        peer.send(RealmWelcome(realm=ctx.config.realm, pool=origin.pool))
        for receipt in ctx.tallies.unacked_receipts(record.address):
            peer.send(receipt)  # receipts it may have missed, in order; it never counts one twice
        ctx.subs.changed("stats")
        return origin

    def left(self, origin: Origin) -> None:
        """The origin's connection closed: cancel its intents here (it runs them elsewhere)."""
        if self.connected.get(origin.address.lower()) is origin:
            del self.connected[origin.address.lower()]
        tally = self.ctx.tallies.payee(origin.address)
        for journal_guid in list(origin.live.values()):
            self._background.run(
                "federation-end",
                self.ctx.dispatcher.terminate(journal_guid, "cancelled", "the origin realm's connection closed"),
            )
            tally.inflight.pop(journal_guid, None)
        origin.live.clear()
        self.ctx.subs.changed("stats")

    def terminate_restored(self) -> int:
        """After a restart: end the peers' intents the journal brought back (their origins
        lost the connection and run them elsewhere). Returns how many."""
        count = 0
        realms = {a.lower() for a in self.ctx.realms}
        for job in list(self.ctx.dispatcher.jobs.values()):
            if job.client is None and job.user.lower() in realms:
                self._background.run(
                    "federation-end",
                    self.ctx.dispatcher.terminate(job.guid, "cancelled", "the origin realm's connection was lost"),
                )
                count += 1
        return count

    # --- the origin's frames ------------------------------------------------

    async def received(self, origin: Origin, msg: object, frame: bytes, proof: Proof) -> None:
        if isinstance(msg, Forward):
            await self.forward(origin, msg)
        elif isinstance(msg, Ack):
            ctx = self.ctx
            if origin.proof is None or origin.proof[0] is not proof:  # kept once per envelope
                origin.proof = (proof, ctx.store.add_proof(origin.address, proof.nonce, proof.to_json()))
            reason = None
            if msg.signature is not None and not ack_signed_by(msg, origin.address, ctx.key.address):
                reason = "its on-chain signature is not the peer's RealmSpend of its total to this realm"
            if reason is None:
                reason = ctx.tallies.acked(origin.address, msg, frame, origin.proof[1])
                ctx.dirty()
            if reason is not None:
                origin.traffic["bad_acks"] += 1
                log.warning("federation: ack from peer %s ignored: %s", origin.record.name, reason)

    async def forward(self, origin: Origin, fwd: Forward) -> None:
        ctx = self.ctx
        peer = origin.peer
        origin.traffic["forwards"] += 1
        if not FORWARD_ID.fullmatch(fwd.guid):
            peer.send(Error(code="invalid_message", message="a forward id is 32 lower-case hex digits", guid=fwd.guid))
            return
        # A forward id this realm never saw has no receipt either: one lookup for a new one.
        seen = origin.live.get(fwd.guid) is not None or await ctx.dispatcher.stored_query(fwd.guid) is not None
        done = ctx.store.receipt_out(origin.address, fwd.guid) if seen else None
        journal_guid = done.journal_guid if done is not None else origin.live.get(fwd.guid)
        price = 0
        if journal_guid is None:
            try:
                price = self._admit(origin, fwd)
            except Rejected as rej:
                origin.traffic["refused"] += 1
                peer.send(rej.to_error(fwd.guid))
                return
            # A forward id that ran here before and did not finish (cancelled,
            # failed) runs again under a new journal guid; a finished one replays.
            journal_guid = f"{fwd.guid}-{secrets.token_hex(4)}" if seen else fwd.guid
        query = SubmitQuery(
            guid=journal_guid, prompt=fwd.prompt, intent=fwd.intent, model=fwd.model, attachments=fwd.attachments,
            params=fwd.params, stream=fwd.stream, max_price=fwd.max_price,
        )
        await ctx.dispatcher.submit(peer, query)
        if done is None and journal_guid in ctx.dispatcher.jobs:
            origin.live[fwd.guid] = journal_guid
            ctx.tallies.payee(origin.address).inflight[journal_guid] = price

    def _admit(self, origin: Origin, fwd: Forward) -> int:
        """The checks only a peer's intent gets; returns its price here."""
        ctx = self.ctx
        if not any(
            not w.remote
            and w.health.state != QUARANTINED
            and w.serves(fwd.intent, fwd.model)
            and w.serves_user(fwd.intent, origin.address)  # never an owner-only intent (email) of another realm
            for w in ctx.registry
        ):
            what = f"intent {fwd.intent!r}" + (f" with model {fwd.model!r}" if fwd.model else "")
            raise Rejected("no_worker", f"no worker of this realm serves {what}", "try another realm", intent=fwd.intent)
        cap = origin.record.max_queued
        if ctx.queue.depth_of(fwd.intent, origin.address) >= cap:
            raise Rejected(
                "queue_full",
                f"your realm has {cap} intents waiting in the {fwd.intent!r} queue here, its limit",
                "wait for some to finish",
                limit=cap,
                scope="peer",
            )
        price = 0
        if ctx.billing is not None:
            price = ctx.billing.quote(origin.address, fwd.intent, fwd.model, fwd.params)
        tally = ctx.tallies.payee(origin.address, origin.record.max_credit)
        used = tally.used()
        if used + price > tally.limit:
            raise Rejected(
                "peer_credit_exceeded",
                f"your realm owes {used} unsettled here; its credit limit is {tally.limit}",
                "settle with this realm (`mtor federation settle`), then retry",
                limit=tally.limit,
                used=used,
                price=price,
            )
        if ctx.billing is not None:
            ctx.billing.credit(origin.address, tally.limit)
        return price

    async def cancel(self, origin: Origin, guid: str) -> None:
        journal_guid = origin.live.get(guid)
        if journal_guid is None:
            origin.peer.send(
                Error(code="unknown_guid", message=f"no queued or running forward {guid!r}", guid=guid)
            )
            return
        await self.ctx.dispatcher.cancel(origin.peer, journal_guid)

    # --- this realm -> the origin -------------------------------------------

    def outgoing(self, origin: Origin, frames: list[bytes]) -> list[bytes]:
        """The dispatcher's frames for the origin, as one sealed envelope."""
        ctx = self.ctx
        tally = None
        out: list[bytes] = []
        for data in frames:
            head = _heads.decode(data)
            kind, guid = head.type, head.guid
            if kind == "accepted":
                continue  # the origin answered its user already
            if guid is None or kind in _PASS:
                out.append(data)
                continue
            fguid = guid[:32]
            if kind == "result":
                res = _results.decode(data)
                if guid != fguid:
                    data = encode(msgspec.structs.replace(res, guid=fguid))
                out.append(data)
                origin.receipts.append(
                    ctx.tallies.receipt_for(origin.address, fguid, guid, res.worker or "", res.cost, res.replayed)
                )
                ctx.dirty()
                if origin.live.get(fguid) == guid:
                    del origin.live[fguid]
                origin.traffic["results"] += 1
                continue
            if kind == "error":
                if guid != fguid:
                    data = encode(msgspec.structs.replace(_errors.decode(data), guid=fguid))
                if origin.live.get(fguid) == guid:
                    del origin.live[fguid]
                tally = tally or ctx.tallies.payee(origin.address)
                tally.inflight.pop(guid, None)
                origin.traffic["errors"] += 1
            elif guid != fguid and kind == "token":
                data = encode(msgspec.structs.replace(_tokens.decode(data), guid=fguid))
            out.append(data)
        return [origin.sealer.seal(out)] if out else []

    # --- the pool and telemetry ---------------------------------------------

    def pool_for(self, origin: Origin) -> Pool:
        ctx = self.ctx
        caps = []
        slots = free = 0
        for w in ctx.registry:
            if w.remote or w.draining or w.health.state == QUARANTINED or w.cap == 0:
                continue
            caps.append([c for c in w.capabilities if c.intent not in w.owner_only])  # owner-only: never a peer's
            slots += w.slots
            free += max(0, w.free)
        intents = {c.intent for cs in caps for c in cs}
        queued = max((ctx.queue.depth_of(i, origin.address) for i in intents), default=0)
        tally = ctx.tallies.payee(origin.address, origin.record.max_credit)
        return Pool(
            capabilities=union(caps),
            slots=slots,
            free=free,
            room=free + max(0, origin.record.max_queued - queued),
            credit_limit=tally.limit,
            credit_used=tally.used(),
        )

    def tick(self, now: float) -> None:
        """Send each origin the receipts given since the last tick (the store has
        committed them: a receipt is durable before the origin sees it), its pool
        if it changed, and its telemetry when due."""
        for origin in list(self.connected.values()):
            if origin.peer.closed:
                continue
            receipts, origin.receipts = origin.receipts, []
            for receipt in receipts:
                origin.peer.send(receipt)
            pool = self.pool_for(origin)
            if pool != origin.pool:
                origin.pool = pool
                origin.peer.send(pool)
            if now >= origin.telemetry_due:
                origin.telemetry_due = now + TELEMETRY_S
                origin.peer.send(self._telemetry(origin))

    def _telemetry(self, origin: Origin) -> Telemetry:
        ctx = self.ctx
        counters = ctx.dispatcher.counters
        done, failed = counters["completed"], counters["failed"]
        new_done, new_failed = done - origin.counts[0], failed - origin.counts[1]
        origin.counts = (done, failed)
        local = [w for w in ctx.registry if not w.remote]
        times = [w.health.job_ms for w in local if w.health.job_ms is not None]
        return Telemetry(
            workers=len(local),
            served=done,
            failed=failed,
            median_latency_ms=round(statistics.median(times), 3) if times else None,
            error_rate=round(new_failed / (new_done + new_failed), 4) if new_done + new_failed else 0.0,
            queued=len(ctx.queue),
        )

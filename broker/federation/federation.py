"""The federation part: this realm's peers, its links to them, and what it serves them.

Built by ``BrokerServer._build`` with only the parts it uses. A realm that
has never pinned a peer (no ``broker.federation.db`` beside its journal)
opens nothing, loads no key and dials nobody: ``tick`` then costs one
``stat`` a second. Once ``mtor federation peer add`` created the store, the
broker loads its realm key, dials every pinned peer (:class:`PeerLink`) and
accepts theirs on ``/ws/realm``; peers added or removed while it runs are
dialled or dropped within a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from broker.config import BrokerConfig
from broker.federation.context import Context
from broker.federation.envelope import WINDOW_S, Opener, Pinned, SeenNonces
from broker.federation.keys import RealmKey, realm_key_path
from broker.federation.link import PeerLink
from broker.federation.serving import Origins
from broker.federation.settlement import Escrow, sign_ack
from broker.federation.socket import realm_socket
from broker.federation.store import FederationStore, PeerRecord, federation_path
from broker.federation.tally import Tallies
from broker.protocol import rest_json

if TYPE_CHECKING:
    from broker.background import Background
    from broker.billing import Billing
    from broker.dispatch import Dispatcher
    from broker.gate import Gate
    from broker.metrics import BrokerMetrics
    from broker.outbox import Outbox
    from broker.queue import JobQueue
    from broker.registry import WorkerRegistry
    from broker.subscriptions import Subscriptions

log = logging.getLogger("mtor.federation")

TICK_S = 0.25  # pools go out at most this often
REFRESH_S = 1.0  # the peers table is looked at this often


class Federation:
    def __init__(
        self,
        config: BrokerConfig,
        journal_path: Path,
        gate: Gate,
        outbox: Outbox,
        registry: WorkerRegistry,
        queue: JobQueue,
        dispatcher: Dispatcher,
        subs: Subscriptions,
        metrics: BrokerMetrics,
        billing: Billing | None,
        background: Background,
    ) -> None:
        self._cfg = config
        self._store_path = federation_path(journal_path)
        self._key_path = realm_key_path(journal_path)
        self._gate = gate
        self._outbox = outbox
        self._registry = registry
        self._queue = queue
        self._dispatcher = dispatcher
        self._subs = subs
        self._metrics = metrics
        self._billing = billing
        self._background = background
        self._ctx: Context | None = None
        self._origins: Origins | None = None
        self._session: aiohttp.ClientSession | None = None
        self._records: dict[str, PeerRecord] = {}  # lower-case address -> pinned peer
        self._pinned: dict[str, Pinned] = {}
        self.links: dict[str, PeerLink] = {}
        self._version: int | None = None
        self._refresh_due = 0.0
        self._stopping: set[asyncio.Task[None]] = set()
        self._shown: tuple[object, ...] = ()  # what the last `federation` push reflected

    @property
    def active(self) -> bool:
        return self._ctx is not None

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Load the peers (if any), end intents of peers the journal restored, dial them."""
        self._refresh()

    def tick(self) -> None:
        """Every TICK_S: look at the peers table (each REFRESH_S); commit the store,
        then send what depends on it (acknowledgements, receipts), pools and telemetry."""
        now = time.monotonic()
        if now >= self._refresh_due:
            self._refresh_due = now + REFRESH_S
            self._refresh()
        ctx = self._ctx
        if ctx is None or self._origins is None:
            return
        acks = [(link, ack) for link in self.links.values() if (ack := link.ack()) is not None]
        if acks:
            escrow = Escrow.of(None if self._billing is None else self._billing.terms(ctx.key.address))
            acks = [(link, sign_ack(ack, ctx.key, link.record.address, escrow)) for link, ack in acks]
        ctx.commit()
        for link, ack in acks:
            link.send(ack)
        self._origins.tick(time.time())
        shown = self._fingerprint()
        if shown != self._shown:
            self._shown = shown
            self._subs.changed("federation")

    def _fingerprint(self) -> tuple[object, ...]:
        """Cheap: changes whenever a peer's view would (the `federation` topic is
        pushed only then, so an idle federation pushes nothing)."""
        assert self._ctx is not None and self._origins is not None
        tallies, served = self._ctx.tallies, self._origins
        return tuple(
            (
                address,
                link.state,
                link.health.state,
                sum(link.traffic.values()),
                link.telemetry_at,
                tallies.payer(link.peer).accepted_count,
                tallies.payee(link.peer).charged,
                len(tallies.payee(link.peer).inflight),
                address in served.connected,
                sum(served.traffic.get(address, {}).values()),
            )
            for address, link in self.links.items()
        )

    async def stop(self) -> None:
        """Close every federation socket (the broker settled its outbox before, for a bounded time)."""
        await asyncio.gather(*(link.stop() for link in self.links.values()), return_exceptions=True)
        self.links = {}
        if self._origins is not None:
            origins = self._origins.connected.values()
            await asyncio.gather(
                *(o.peer.close(code=1001, message=b"broker shutting down", settle=False) for o in origins),
                return_exceptions=True,
            )
        await asyncio.gather(*self._stopping, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._ctx is not None:
            self._ctx.store.close()

    def _refresh(self) -> None:
        if self._ctx is None:
            if not self._store_path.exists():
                return
            self._activate()
        ctx = self._ctx
        assert ctx is not None
        version = ctx.store.version()
        if version == self._version:
            return
        first = self._version is None
        self._version = version
        self._load(ctx, ctx.store.peers())
        if first and self._origins is not None:
            ended = self._origins.terminate_restored()
            if ended:
                log.info("federation: cancelled %d restored intent(s) of peer realms", ended)

    def _activate(self) -> None:
        store = FederationStore(self._store_path)
        key = RealmKey.load_or_create(self._key_path)
        self._ctx = ctx = Context(
            self._cfg, key, Opener(key.address, SeenNonces(WINDOW_S), WINDOW_S), store, Tallies(store),
            self._registry, self._dispatcher, self._queue, self._outbox, self._subs, self._billing,
        )
        self._origins = Origins(ctx, self._background)
        self._session = aiohttp.ClientSession()
        log.info("federation: realm key %s", key.address)

    def _load(self, ctx: Context, records: list[PeerRecord]) -> None:
        wanted = {r.address.lower(): r for r in records}
        for address in [a for a in self._records if a not in wanted]:
            self._forget(address)
        ctx.realms.clear()
        ctx.realms.update(r.address for r in records)
        for address, record in wanted.items():
            old = self._records.get(address)
            self._records[address] = record
            pinned = self._pinned.setdefault(address, Pinned(record.address))
            ctx.tallies.payee(record.address, record.max_credit)
            ctx.tallies.reload_settled(record.address)  # `mtor federation settle` writes beside us
            link = self.links.get(address)
            if link is not None and old is not None and old.url == record.url:
                link.record = record
            else:
                if link is not None:
                    self._later(link.stop())
                link = self.links[address] = PeerLink(ctx, record, pinned)
                assert self._session is not None
                link.start(self._session)
            assert self._origins is not None
            served = self._origins.connected.get(address)
            if served is not None:
                served.record = record
        self._subs.changed("stats", "workers")

    def _forget(self, address: str) -> None:
        self._records.pop(address, None)
        self._pinned.pop(address, None)
        link = self.links.pop(address, None)
        if link is not None:
            self._later(link.stop())
        if self._origins is not None:
            served = self._origins.connected.get(address)
            if served is not None:
                self._later(served.peer.close(code=4001, message=b"no longer a peer"))

    def _later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    # --- HTTP -------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        async def realm(request: web.Request) -> web.StreamResponse:
            return await realm_socket(
                request, self._cfg, self._gate, self._outbox, self._metrics, self._context, self._peer_of
            )

        async def status(_: web.Request) -> web.Response:
            return web.Response(body=rest_json(self.view()), content_type="application/json")

        return [web.get("/ws/realm", realm), web.get("/v1/federation", status)]

    def _context(self) -> tuple[Context, Origins] | None:
        if self._ctx is None or self._origins is None or not self._records:
            return None
        return self._ctx, self._origins

    def _peer_of(self, address: str) -> tuple[PeerRecord, Pinned] | None:
        key = address.lower()
        record = self._records.get(key)
        return None if record is None else (record, self._pinned[key])

    # --- what it shows ----------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """``GET /v1/federation`` and ``mtor federation status``: every peer's
        health, credit and traffic (docs/federation.md)."""
        ctx = self._ctx
        realm: dict[str, Any] = {"name": self._cfg.realm, "address": None if ctx is None else ctx.key.address}
        peers = []
        if ctx is not None and self._origins is not None:
            for address, record in self._records.items():
                peers.append(self._peer_view(ctx, self._origins, address, record))
        return {"realm": realm, "federating": bool(peers), "peers": peers}

    def _peer_view(self, ctx: Context, origins: Origins, address: str, record: PeerRecord) -> dict[str, Any]:
        now = time.time()
        link = self.links.get(address)
        out: dict[str, Any] = {}
        if link is not None:
            pool = link.pool
            out = {
                "state": link.state,
                "since": round(link.since, 3),
                "error": link.error,
                "worker": link.entry.id if link.entry is not None else None,
                "health": link.health.to_dict(),
                "pool": None if pool is None else {
                    "intents": {c.intent: list(c.models) for c in pool.capabilities},
                    "slots": pool.slots, "free": pool.free, "room": pool.room,
                    "credit_limit": pool.credit_limit, "credit_used": pool.credit_used,
                },
                "telemetry": None if link.telemetry is None else {
                    "workers": link.telemetry.workers,
                    "served": link.telemetry.served,
                    "failed": link.telemetry.failed,
                    "median_latency_ms": link.telemetry.median_latency_ms,
                    "error_rate": link.telemetry.error_rate,
                    "queued": link.telemetry.queued,
                    "age_s": round(now - link.telemetry_at, 3),
                },
                "traffic": dict(link.traffic),
            }
        served = origins.connected.get(address)
        payer = ctx.tallies.payer(record.address)
        payee = ctx.tallies.payee(record.address)
        return {
            "name": record.name,
            "address": record.address,
            "url": record.url,
            "added": record.added,
            "max_queued": record.max_queued,
            "link": out,
            "served": {
                "connected": served is not None,
                "since": None if served is None else round(served.connected_at, 3),
                "live": 0 if served is None else len(served.live),
                "traffic": dict(origins.traffic.get(address, {})),
            },
            "credit": {
                # This realm pays the peer for the intents it forwarded there.
                "we_owe": {
                    "accepted": payer.accepted,
                    "receipts": payer.accepted_count,
                    "disputed": payer.disputed_count,
                    "disputed_amount": payer.disputed,
                    "settled": payer.settled,
                    "unsettled": payer.accepted - payer.settled,
                },
                # The peer pays this realm for the intents it served for it.
                "owed_to_us": {
                    "charged": payee.charged,
                    "acknowledged": payee.acked_total,
                    "settled": payee.settled,
                    "in_flight": sum(payee.inflight.values()),
                    "limit": payee.limit,
                    "used": payee.used(),
                },
            },
        }

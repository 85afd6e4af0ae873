"""BrokerServer: the aiohttp app that ties the broker's parts together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from broker.account_rest import install as install_accounts
from broker.billing import Billing
from broker.client_session import client_socket
from broker.config import BrokerConfig
from broker.dispatch import Dispatcher
from broker.health import HEALTHY, PROBING, QUARANTINED
from broker.journal import SqliteJournal
from broker.metrics import BrokerMetrics
from broker.money_rest import Desk, Teller
from broker.money_rest import routes as money_routes
from broker.outbox import Outbox
from broker.peer import Peer
from broker.protocol import Ping
from broker.queue import SafeQueue
from broker.registry import WorkerRegistry
from broker.rest import routes
from broker.signed import RequestVerifier
from broker.subscriptions import Subscriptions
from broker.tls import server_context
from broker.worker_session import worker_socket

if TYPE_CHECKING:
    from broker.accounts import AccountStore
    from broker.ratelimit import RateLimits
    from broker.sysop import Sysop
    from broker.trust import WorkerTrust

log = logging.getLogger("mtor.broker")


class BrokerServer:
    # Installed at start by broker.account_rest.install with their routes.
    accounts: AccountStore
    sysop: Sysop
    trust: WorkerTrust
    limits: RateLimits

    def __init__(
        self,
        config: BrokerConfig | None = None,
        billing: Billing | None = None,
        money: Callable[[], Desk] | None = None,
    ) -> None:
        """``money`` makes the ledger's money desk for the /v1/wallet routes (paid realms)."""
        self.config = config or BrokerConfig()
        self.billing = billing
        self.teller = Teller(money) if money is not None else None
        self.clients: set[Peer] = set()
        self.worker_peers: set[Peer] = set()
        self.port = 0
        self.restored = 0  # intents queued again from the journal at start
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._started = 0.0
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"{'wss' if self.config.tls_cert else 'ws'}://{self._host_for_url()}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.config.tls_cert else 'http'}://{self._host_for_url()}:{self.port}"

    def _host_for_url(self) -> str:
        host = self.config.host
        return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    async def start(self) -> None:
        cfg = self.config
        self.journal = SqliteJournal(cfg.resolved_db_path())
        self.outbox = Outbox(self.journal, self.billing)
        self.queue = SafeQueue(cfg.queue_limit)
        self.registry = WorkerRegistry(cfg)
        self.metrics = BrokerMetrics(self._live)
        self.subs = Subscriptions(
            cfg.stats_interval_s,
            {
                "stats": self.stats,
                "workers": self.workers_snapshot,
                "queue": self._queue_snapshot,
                "intents": self._live_intents,
            },
            # Bound late: the sysop roles are installed with the routes.
            sees_all=lambda address: self.sysop.is_sysop(address),
            balance_of=self.billing.balance if self.billing is not None else None,
        )
        self.dispatcher = Dispatcher(
            cfg, self.journal, self.queue, self.registry, self.outbox, self.billing, self.subs, self.metrics
        )
        self.restored = self.dispatcher.restore()

        app = web.Application(client_max_size=cfg.transport_max_msg_size)
        app.router.add_get("/ws/client", self._client_socket)
        app.router.add_get("/ws/worker", self._worker_socket)
        app.add_routes(routes(self))
        app.add_routes(money_routes(self.teller, RequestVerifier(cfg.request_window_s), cfg.realm))
        install_accounts(self, app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port, reuse_address=True, ssl_context=server_context(cfg))
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._started = time.monotonic()
        self._ticker = asyncio.create_task(self._tick())

    async def _client_socket(self, request: web.Request) -> web.WebSocketResponse:
        return await client_socket(self, request)

    async def _worker_socket(self, request: web.Request) -> web.WebSocketResponse:
        return await worker_socket(self, request)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self.subs.close()
        peers = list(self.worker_peers) + list(self.clients)
        await asyncio.gather(
            *(peer.close(code=1001, message=b"broker shutting down") for peer in peers),
            return_exceptions=True,
        )
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.dispatcher.close()
        self.outbox.flush()
        self.journal.close()
        if self.teller is not None:
            self.teller.close()

    async def __aenter__(self) -> BrokerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the periodic tick: heartbeats, probes, queue expiry -------------

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            try:
                self._heartbeat()
                self.dispatcher.sweep()
            except Exception:  # a bug here must not stop heartbeats for good
                log.exception("broker tick failed")

    def _heartbeat(self) -> None:
        cfg = self.config
        now = time.monotonic()
        for worker in self.registry:
            health = worker.health
            if health.pings_unanswered >= cfg.heartbeat_misses:
                # Silent for too long: treat as gone, its jobs go elsewhere.
                task = asyncio.create_task(worker.peer.close(code=4002, message=b"heartbeat missed"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
                continue
            nonce = secrets.token_hex(4)
            worker.ping_sent = {nonce: time.perf_counter()}
            health.pings_unanswered += 1
            worker.peer.send(Ping(nonce=nonce, ts=time.time()))
            if health.maybe_probe(now):
                self.subs.changed("workers")
                self.dispatcher.pump_all()

    # --- views for REST, subscribers and metrics --------------------------

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "realm": self.config.realm,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "workers": len(self.registry),
            "clients": len(self.clients),
            "queued": len(self.queue),
        }

    def _slots(self) -> tuple[int, int]:
        busy = total = 0
        for w in self.registry:
            busy += len(w.running)
            total += w.slots
        return busy, total

    def _workers_by_state(self) -> dict[str, int]:
        counts = {HEALTHY: 0, QUARANTINED: 0, PROBING: 0}
        for w in self.registry:
            counts[w.health.state] += 1
        return counts

    def stats(self) -> dict[str, Any]:
        busy, total = self._slots()
        return {
            "realm": self.config.realm,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "clients": len(self.clients),
            "subscribers": len(self.subs),
            "workers": len(self.registry),
            "workers_by_state": self._workers_by_state(),
            "slots_busy": busy,
            "slots_total": total,
            "queued": len(self.queue),
            "running": busy,
            "queue_depth": {i: self.queue.depth(i) for i in self.queue.intents()},
            "intents": dict(self.dispatcher.counters),
            "restored": self.restored,
        }

    def workers_snapshot(self) -> dict[str, Any]:
        workers = self.registry.snapshot()
        if self.billing is not None:
            earned = self.billing.earnings([str(w["address"]) for w in workers])
            for worker in workers:
                worker["earnings"] = earned[str(worker["address"])]
        return {"workers": workers}

    def _queue_snapshot(self) -> dict[str, Any]:
        return {"intents": self.queue.snapshot(), "total": len(self.queue)}

    def _live_intents(self) -> dict[str, Any]:
        now = time.monotonic()
        live = []
        for job in list(self.dispatcher.jobs.values())[:200]:
            live.append(
                {
                    "guid": job.guid,
                    "user": job.user,
                    "intent": job.intent,
                    "state": "running" if job.worker is not None else "queued",
                    "worker": job.worker.id if job.worker is not None else None,
                    "attempts": job.attempts,
                    "age_s": round(now - job.queued_at, 3),
                }
            )
        return {"live": live, "live_total": len(self.dispatcher.jobs)}

    def _live(self) -> dict[str, Any]:
        busy, total = self._slots()
        return {
            "queue_depth": {i: self.queue.depth(i) for i in self.queue.intents()},
            "workers_by_state": self._workers_by_state(),
            "slots_busy": busy,
            "slots_total": total,
            "clients": len(self.clients),
            "subscribers": len(self.subs),
            "tokens": self.dispatcher.counters["tokens"],
        }


async def _serve_until_signal(config: BrokerConfig, billing: Billing | None) -> None:
    server = BrokerServer(config, billing)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def serve(config: BrokerConfig, billing: Billing | None = None) -> None:
    """Run a broker until SIGINT/SIGTERM (`mtor broker serve`)."""
    asyncio.run(_serve_until_signal(config, billing))

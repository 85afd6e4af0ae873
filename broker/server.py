"""BrokerServer: builds every part of the broker, wires the app, starts and stops it.

This is the one place where parts are made; each gets only the parts it uses,
and the socket and REST handlers get a :class:`broker.parts.Parts`. The map of
who receives what is in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from broker.account_rest import routes as account_routes
from broker.background import Background
from broker.billing import Billing
from broker.client_session import client_socket
from broker.config import BrokerConfig
from broker.dispatch import Dispatcher
from broker.federation.federation import TICK_S as FEDERATION_TICK_S
from broker.federation.federation import Federation
from broker.gate import Gate, raise_fd_limit
from broker.heartbeat import Heartbeat
from broker.metrics import BrokerMetrics
from broker.money_rest import Desk, Teller
from broker.money_rest import routes as money_routes
from broker.openai_api import HANGUP_CHECK_S, KeyStore, OpenAIGateway, keys_path
from broker.openai_api.keys_rest import routes as key_routes
from broker.openai_api.routes import routes as openai_routes
from broker.outbox import Outbox
from broker.parts import Parts
from broker.peer import Peers
from broker.protocol import sane_recursion_limit
from broker.queue import JobQueue, SafeQueue
from broker.ratelimit import RateLimits
from broker.realm import Alone, Others
from broker.registry import WorkerRegistry
from broker.rest import routes as rest_routes
from broker.roles import Roles
from broker.routing import Recognises, Router
from broker.signed import RequestVerifier
from broker.stores import Stores, open_stores
from broker.subscriptions import Subscriptions
from broker.sysop import Sysop
from broker.tls import server_context
from broker.trust import WorkerTrust
from broker.views import RealmViews
from broker.worker_session import worker_socket

if TYPE_CHECKING:
    from broker.engine.shared import SharedRealm

log = logging.getLogger("mtor.broker")

TRUST_SWEEP_S = 1.0  # trust counts timeouts and saves its counters this often


class BrokerServer:
    parts: Parts  # built by start()

    def __init__(
        self,
        config: BrokerConfig | None = None,
        billing: Billing | None = None,
        money: Callable[[], Desk] | None = None,
        recogniser: Recognises | None = None,
    ) -> None:
        """``money`` makes the ledger's money desk for the money routes (paid realms);
        ``recogniser`` places queries no rule routes (e.g. mtor_cli.intent's), kept loaded."""
        self.config = config or BrokerConfig()
        self.billing = billing
        self.recogniser = recogniser
        self.teller = Teller(money) if money is not None else None
        self.port = 0
        self.restored = 0  # intents queued again from the journal at start
        self.undelivered: dict[str, int] = {}  # store -> writes the last stop gave up on
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stores: Stores | None = None
        self._shared: SharedRealm | None = None
        self._background: Background | None = None
        self.federation: Federation | None = None  # built by start()

    @property
    def url(self) -> str:
        return f"{'wss' if self.config.tls_cert else 'ws'}://{self._host_for_url()}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.config.tls_cert else 'http'}://{self._host_for_url()}:{self.port}"

    def _host_for_url(self) -> str:
        host = self.config.host
        return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    async def _build(self) -> Parts:
        """Every part, in dependency order; each receives only what it uses."""
        cfg, billing = self.config, self.billing
        metrics = BrokerMetrics()
        stores = self._stores = await open_stores(cfg, metrics.task_failed)
        journal = stores.journal
        outbox = Outbox(journal, billing)
        queue: JobQueue
        others: Others
        if cfg.engine is not None:  # a realm of brokers sharing Redis (docs/scale.md)
            from broker.engine.shared import SharedRealm

            shared = self._shared = SharedRealm(cfg, metrics.task_failed)
            await shared.connect()
            queue, others, broker_id = shared.make_queue(outbox), shared, shared.id
        else:
            queue, others, broker_id = SafeQueue(cfg.queue_limit), Alone(), ""
        registry = WorkerRegistry(cfg, broker_id)
        peers = Peers()
        accounts = stores.accounts
        roles = Roles(cfg.operator, accounts)
        subs = Subscriptions(
            cfg.stats_interval_s,
            sees_all=roles.is_sysop,
            balance_of=billing.balance if billing is not None else None,
            others=others,
        )
        dispatcher = Dispatcher(cfg, journal, queue, registry, outbox, billing, subs, metrics, others)
        self.restored = await dispatcher.restore()
        background = self._background = Background(metrics.task_failed)
        trust = WorkerTrust(cfg, accounts, registry, subs, dispatcher.pump_all, background)
        views = RealmViews(cfg, registry, queue, dispatcher, peers, subs, billing, self.restored, others, broker_id)
        gate = Gate(
            cfg.login_timeout_s,
            min(cfg.max_unauthenticated, raise_fd_limit() // 4),
            cfg.max_unauthenticated_per_ip,
        )
        self.federation = Federation(
            cfg, cfg.resolved_db_path(), gate, outbox, registry, queue, dispatcher, subs, metrics, billing, background
        )
        subs.serve({**views.topics(), "federation": self.federation.view})
        if self._shared is not None:
            self._shared.serve(
                dispatcher, registry, views.describe, dispatcher.restore,
                lambda: subs.changed("stats", "workers", "queue"), trust.view,
            )  # fmt: skip
        limits = self._shared.make_limits() if self._shared is not None else RateLimits(cfg, dispatcher.jobs)
        keys = KeyStore(keys_path(cfg.resolved_db_path()))
        openai = OpenAIGateway(dispatcher, limits, registry, accounts, keys, outbox, billing, cfg.realm, background)
        return Parts(
            config=cfg,
            outbox=outbox,
            peers=peers,
            gate=gate,
            metrics=metrics,
            registry=registry,
            dispatcher=dispatcher,
            subs=subs,
            limits=limits,
            trust=trust,
            roles=roles,
            sysop=Sysop(roles, accounts, dispatcher, registry, trust, peers, subs, others, background),
            accounts=accounts,
            history=stores.history,
            verifier=RequestVerifier(cfg.request_window_s, accounts),
            views=views,
            openai=openai,
            router=Router(registry.intents, dispatcher.live_query, self.recogniser),
            billing=billing,
        )

    async def start(self) -> None:
        cfg = self.config
        sane_recursion_limit()  # a billing that imported web3 raised it (see broker.protocol)
        if cfg.engine is not None:
            await self._warm_before_joining()
        parts = self.parts = await self._build()
        federation = self.federation
        assert federation is not None

        async def clients(request: web.Request) -> web.StreamResponse:
            return await client_socket(parts, request)

        async def workers(request: web.Request) -> web.StreamResponse:
            return await worker_socket(parts, request)

        app = web.Application(client_max_size=cfg.transport_max_msg_size)
        app.router.add_get("/ws/client", clients)
        app.router.add_get("/ws/worker", workers)
        app.add_routes(rest_routes(parts))
        app.add_routes(account_routes(parts))
        app.add_routes(openai_routes(parts))
        app.add_routes(key_routes(parts))
        app.add_routes(money_routes(parts, self.teller))
        app.add_routes(federation.routes())
        # keepalive_timeout: an HTTP connection that sends no (complete) request
        # for that long is closed, so slowly trickled headers cannot hold a socket.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=cfg.login_timeout_s
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port, reuse_address=True, ssl_context=server_context(cfg))
        await site.start()
        self.port = self._runner.addresses[0][1]
        # Before any socket is served: intents of peer realms the journal restored end first.
        federation.start()
        parts.views.url = self.url
        heartbeat = Heartbeat(cfg.heartbeat_misses, parts.registry, parts.subs, parts.dispatcher.pump_all)

        async def tick() -> None:
            heartbeat.beat()
            await parts.dispatcher.sweep()

        self._tasks = [
            asyncio.create_task(_every("tick", cfg.heartbeat_s, tick, parts.metrics)),
            asyncio.create_task(_every("trust-sweep", TRUST_SWEEP_S, parts.trust.sweep, parts.metrics)),
            asyncio.create_task(_every("federation", FEDERATION_TICK_S, federation.tick, parts.metrics)),
            asyncio.create_task(_every("http-hangups", HANGUP_CHECK_S, parts.openai.sweep, parts.metrics)),
            asyncio.create_task(parts.router.warm(), name="mtor-recogniser-warm"),
        ]

    async def _warm_before_joining(self) -> None:
        """Load the recogniser before this broker's first beat: loading it starves
        the event loop for seconds on a busy machine, and a broker that misses
        its beats for --engine-dead is reaped by the others (its intents rerun)."""
        warm = getattr(self.recogniser, "warm", None)
        if warm is None:
            return
        try:
            await asyncio.to_thread(warm)
        except Exception:  # Router.warm tries again, logs it and routes by rules only
            log.warning("the intent recogniser did not load before joining the realm", exc_info=True)

    async def stop(self) -> None:
        """Stop serving, then give the writes still on their way to the journal
        and the engine ``stop_grace_s`` seconds in all. Whatever is left then
        (its server does not answer) is logged, counted in /metrics
        (``mtor_stop_undelivered_total``) and set in :attr:`undelivered`: it is
        durable elsewhere (docs/scale.md, "When something fails")."""
        deadline = time.monotonic() + self.config.stop_grace_s

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        parts = self.parts
        parts.router.close()
        parts.subs.close()
        # What peers were sent goes first, unless it waits for a store that does not answer.
        await _within("", parts.outbox.settle(), left(), parts.metrics)
        if self.federation is not None:
            await self.federation.stop()
        await asyncio.gather(
            *(peer.close(code=1001, message=b"broker shutting down", settle=False) for peer in parts.peers),
            return_exceptions=True,
        )
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await _within("the last trust counters", parts.trust.sweep(), left(), parts.metrics)
        if self._background is not None:
            await _within("background writes", self._background.drain(), left(), parts.metrics)
        parts.openai.keys.close()
        parts.dispatcher.close()
        # Frames wait for the journal's commit: those of intents whose outcome
        # cannot be stored are never sent (their clients resubmit the guids).
        await _within("", parts.outbox.settle(), left(), parts.metrics)
        if self._shared is not None:
            self.undelivered["engine"] = await self._shared.close(left())
            self._shared = None
        if self._stores is not None:
            self.undelivered["journal"] = await self._stores.close(left())
            self._stores = None
        if self.teller is not None:
            self.teller.close()
        self._report_undelivered(parts.metrics)

    def _report_undelivered(self, metrics: BrokerMetrics) -> None:
        self.undelivered = {store: n for store, n in self.undelivered.items() if n}
        if not self.undelivered:
            return
        for store, n in self.undelivered.items():
            metrics.gave_up(store, n)
        log.warning("%s", self.undelivered_message())

    def undelivered_message(self) -> str:
        """What a stop left undone, for people ("" if nothing)."""
        what = {"journal": "outcome(s) to the journal (PostgreSQL)", "engine": "operation(s) to the engine (Redis)"}
        parts = [f"{n} {what[store]}" for store, n in self.undelivered.items()]
        if not parts:
            return ""
        return (
            f"stopped after its {self.config.stop_grace_s:g} s grace and could not deliver "
            + " and ".join(parts)
            + ": nothing is lost, those intents stay unfinished in the journal (or running in the engine) "
            "and run again on another broker or after a restart (docs/scale.md)"
        )

    async def __aenter__(self) -> BrokerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _within(what: str, work: Awaitable[None], seconds: float, metrics: BrokerMetrics) -> None:
    """``work`` for at most ``seconds`` (a stopping broker's grace); a failure
    or a timeout of ``what`` is logged and counted, and the stop goes on."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        if what:
            metrics.task_failed("stop")
            log.warning("stopping: gave up on %s after the grace", what)
        return
    if not task.cancelled() and task.exception() is not None:
        metrics.task_failed("stop")
        log.warning("stopping: %s failed: %s", what or "the last frames", task.exception())


async def _every(
    name: str, seconds: float, run: Callable[[], Awaitable[None] | None], metrics: BrokerMetrics
) -> None:
    """Run ``run`` every ``seconds`` until cancelled; a failed run is logged,
    counted in /metrics (``mtor_task_errors_total{task}``) and tried again at
    the next period, so a bug never stops heartbeats or sweeps for good."""
    while True:
        await asyncio.sleep(seconds)
        try:
            outcome = run()
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            metrics.task_failed(name)
            log.exception("broker task %s failed; retrying in %g s", name, seconds)


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

"""What the MTOR broker adds to a request, against a direct socket and a minimal relay.

    python bench/broker_overhead.py [--quick]

Every hub and every echo worker is its own process, on 127.0.0.1 only:

* direct: the bench's client process accepts one echo worker's connection
  itself and sends it `work` frames: the floor of any bus, one WebSocket hop.
* relay:  a minimal aiohttp relay (written below, ~40 lines) between client and
  two echo workers: it forwards frames by guid and does nothing else.
* mtor:   the MTOR broker (journal on, SQLite WAL in a temp dir) between the
  client and two echo workers: signed handshake, validation, SafeQueue,
  credit-based dispatch, journal writes and commits, health, metrics.
* paid:   the same broker charging every intent, wired as `mtor broker serve
  --paid` wires it (ledger journal, welcome grants on the embedded dev chain,
  settlement in its own upkeep process); its clients send a signed spending
  authorisation with every query (a budget each signs once, as a client may).

The workers are the real thing: `worker.Worker` serving `worker.backends.echo`
(one token per word, then the result). Every request is the prompt "ping".

It prints, from the same run: the round trip at 1 request in flight (median
and p99) for each path and the overhead of relay and mtor over direct; then
intents/s at 64, 128 and 256 in flight for relay, mtor and paid, the best of
each, mtor's share of the relay's throughput and paid's share of mtor's (goal
>= 0.5), with the paid broker's CPU per intent and the upkeep process's CPU. Latency batches and throughput
windows alternate between the paths so that the machine's drift hits all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

ROOT = Path(__file__).resolve().parent.parent
# bench/ledger.py must not shadow the `ledger` package (the paid broker imports it)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORKER_SLOTS = 256
T0 = time.perf_counter()


def progress(what: str) -> None:
    print(f"[{time.perf_counter() - T0:5.1f} s] {what}", file=sys.stderr, flush=True)
WINDOWS = (64, 128, 256)
TARGET_MEDIAN_MS = 0.3
TARGET_P99_MS = 1.5
TARGET_THROUGHPUT_SHARE = 0.6
TARGET_PAID_SHARE = 0.5  # paid mtor against free mtor


# --- child processes -------------------------------------------------------


def run_relay() -> None:
    """The floor for a hub: forward client frames to workers round robin, and
    worker frames back to the client that sent the guid."""
    from aiohttp import web

    workers: list[web.WebSocketResponse] = []
    routes: dict[str, web.WebSocketResponse] = {}
    turn = 0

    async def worker_socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        # Just enough handshake for a real worker to start serving.
        await ws.send_str(orjson.dumps({"type": "challenge", "nonce": uuid.uuid4().hex}).decode())
        register = orjson.loads((await ws.receive()).data)
        await ws.send_str(orjson.dumps({"type": "welcome", "address": register["address"], "worker_id": "r"}).decode())
        workers.append(ws)
        async for frame in ws:
            msg = orjson.loads(frame.data)
            guid = msg.get("guid")
            client = routes.get(guid) if guid else None
            if client is None:
                continue
            if msg["type"] in ("result", "failed"):
                del routes[guid]
            await client.send_str(frame.data)
        workers.remove(ws)
        return ws

    async def client_socket(request: web.Request) -> web.WebSocketResponse:
        nonlocal turn
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for frame in ws:
            msg = orjson.loads(frame.data)
            routes[msg["guid"]] = ws
            turn = (turn + 1) % len(workers)
            await workers[turn].send_str(frame.data)
        return ws

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"workers": len(workers)})

    app = web.Application()
    app.router.add_get("/ws/worker", worker_socket)
    app.router.add_get("/ws/client", client_socket)
    app.router.add_get("/healthz", healthz)
    asyncio.run(_serve_app(app))


async def _serve_app(app: Any) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"READY {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


def run_mtor(db: str, paid: bool = False) -> None:
    from broker import BrokerConfig, BrokerServer

    async def main() -> None:
        billing = None
        if paid:  # as `mtor broker serve --paid`: the data dir is $MTOR_HOME (a temp dir)
            from mtor_cli.commands.ledger import start_realm_ledger

            billing = start_realm_ledger(asyncio.Event())
        server = BrokerServer(BrokerConfig(port=0, db_path=Path(db), queue_limit=10_000), billing)
        await server.start()
        print(f"READY {server.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def run_worker(url: str) -> None:
    from eth_account import Account

    from worker import Device, Worker, WorkerConfig
    from worker.backends.echo import EchoBackend

    async def main() -> None:
        worker = Worker(
            WorkerConfig(broker_url=url, slots=WORKER_SLOTS, name="bench-echo", heartbeat_s=60),
            [EchoBackend(None, Device.parse(None))],
            Account.create(),
        )
        await worker.run()

    asyncio.run(main())


# --- the measuring client --------------------------------------------------


class Route:
    """One way to reach an echo worker: send a request, get a future for its result."""

    name = ""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self._send: Callable[[str], Any] | None = None

    def make_frame(self, guid: str) -> str:
        return orjson.dumps({"type": "work", "guid": guid, "intent": "echo", "prompt": "ping"}).decode()

    def on_frame(self, data: str) -> None:
        msg = orjson.loads(data)
        kind = msg["type"]
        if kind in ("result", "failed", "error"):
            fut = self.waiting.pop(msg.get("guid"), None)
            if fut is not None:
                if kind == "result":
                    fut.set_result(None)
                else:
                    fut.set_exception(RuntimeError(f"{kind}: {msg}"))

    async def request(self) -> None:
        guid = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self.waiting[guid] = fut
        assert self._send is not None
        await self._send(self.make_frame(guid))
        await fut


class Direct(Route):
    name = "direct"

    def __init__(self) -> None:
        super().__init__()
        self.connected = asyncio.Event()
        self._runner: Any = None

    async def start(self) -> str:
        """Listen for the worker; returns the URL to give it."""
        from aiohttp import web

        async def worker_socket(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(compress=False)
            await ws.prepare(request)
            await ws.send_str(orjson.dumps({"type": "challenge", "nonce": uuid.uuid4().hex}).decode())
            register = orjson.loads((await ws.receive()).data)
            await ws.send_str(orjson.dumps({"type": "welcome", "address": register["address"]}).decode())
            self._send = ws.send_str
            self.connected.set()
            async for frame in ws:
                self.on_frame(frame.data)
            return ws

        app = web.Application()
        app.router.add_get("/ws/worker", worker_socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"ws://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ViaHub(Route):
    def __init__(self, name: str, url: str, signed: bool, account: Any = None) -> None:
        super().__init__()
        self.name = name
        self.url = url
        self.signed = signed
        self.account = account

    def make_frame(self, guid: str) -> str:
        if not self.signed:
            return super().make_frame(guid)
        return orjson.dumps({"type": "submit_query", "guid": guid, "intent": "echo", "prompt": "ping"}).decode()

    async def connect(self, session: Any) -> None:
        self.ws = await session.ws_connect(self.url + "/ws/client")
        if self.signed:
            from eth_account import Account

            from broker.protocol import sign_challenge

            account = self.account or Account.create()
            challenge = orjson.loads((await self.ws.receive()).data)
            signature = sign_challenge(account.key, challenge["nonce"], "client")
            await self.ws.send_str(
                orjson.dumps(
                    {"type": "hello", "address": account.address, "signature": signature, "nonce": challenge["nonce"]}
                ).decode()
            )
            welcome = orjson.loads((await self.ws.receive()).data)
            assert welcome["type"] == "welcome", welcome
        self._send = self.ws.send_str
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            self.on_frame(frame.data)


class PaidHub(Route):
    """Clients of a paid broker, each its own account and connection, requests spread
    over them; each account signs one cumulative authorisation of its whole welcome
    grant (a budget), which the realm checks once."""

    CLIENTS = 8  # each welcome grant (100 $9000) pays 10,000 echo queries

    def __init__(self, url: str) -> None:
        super().__init__()
        self.name = "paid"
        self.url = url
        self._hubs: list[ViaHub] = []
        self._auth: list[dict[str, Any]] = []
        self._turn = 0

    def make_frame(self, guid: str) -> str:
        self._turn = (self._turn + 1) % len(self._hubs)
        frame: dict[str, Any] = {"type": "submit_query", "guid": guid, "intent": "echo", "prompt": "ping"}
        frame["authorisation"] = self._auth[self._turn]
        self._send = self._hubs[self._turn].ws.send_str
        return msgspec.json.encode(frame).decode()  # amounts past 64 bits: orjson refuses them

    async def request(self) -> None:
        guid = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self.waiting[guid] = fut
        frame = self.make_frame(guid)
        assert self._send is not None
        await self._send(frame)
        await fut

    async def connect(self, session: Any) -> None:
        from eth_account import Account

        from ledger.authorisation import Terms, sign
        from ledger.units import ONE

        deadline = time.monotonic() + 120
        while True:  # the upkeep deploys the contracts on its first pass
            async with session.get(self.url.replace("ws://", "http://") + "/v1/ledger/terms") as resp:
                if resp.status == 200:
                    terms = await resp.json()
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the paid broker's ledger never deployed")
            await asyncio.sleep(0.2)
        domain = Terms(int(terms["chain_id"]), terms["ledger"])
        for _ in range(self.CLIENTS):
            account = Account.create()
            hub = ViaHub("paid", self.url, signed=True, account=account)
            hub.on_frame = self.on_frame  # type: ignore[method-assign]
            await hub.connect(session)
            budget = 100 * ONE
            self._auth.append({"total": budget, "signature": sign(account.key, domain, account.address, budget)})
            self._hubs.append(hub)


async def latency_batch(path: Route, n: int, into: list[float]) -> None:
    for _ in range(n):
        t0 = time.perf_counter()
        await path.request()
        into.append((time.perf_counter() - t0) * 1000)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(path: Route, in_flight: int, seconds: float, hub_pid: int) -> tuple[float, float]:
    """Intents/s with ``in_flight`` outstanding, and the hub's CPU microseconds per intent."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def lane() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await path.request()
            done += 1

    t0, cpu0 = time.perf_counter(), cpu_seconds(hub_pid)
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(hub_pid) - cpu0
    return done / elapsed, cpu / done * 1e6


async def wait_ready(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    if not line.startswith("READY"):
        raise RuntimeError(f"child failed to start: {line!r}")
    return int(line.split()[1])


def spawn(*args: str, home: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if home is not None:  # the paid broker's own data dir: ledger, embedded chain, keys
        env["MTOR_HOME"] = str(home)
        env.pop("MTOR_CHAIN_RPC", None)
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT)
    )


async def wait_workers(session: Any, http_url: str, count: int) -> None:
    """Until the hub's /healthz counts ``count`` workers."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with session.get(http_url + "/healthz") as resp:
            if (await resp.json())["workers"] >= count:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{http_url}: workers did not connect")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(quick: bool) -> int:
    import aiohttp

    rounds, batch = (4, 100) if quick else (10, 250)
    # Each in-flight level is measured in several short windows that alternate
    # between relay and mtor; the median window counts (the machine's load
    # swings by tens of percent within seconds).
    tp_rounds, window_s = (1, 1.0) if quick else (3, 0.8)
    procs: list[subprocess.Popen[str]] = []
    tmp = tempfile.TemporaryDirectory(prefix="mtor-bench-")
    direct = Direct()
    try:
        relay = spawn("--role", "relay")
        mtor = spawn("--role", "mtor", "--db", str(Path(tmp.name) / "journal.db"))
        paid = spawn("--role", "paid", "--db", str(Path(tmp.name) / "paid.db"), home=Path(tmp.name) / "paid-home")
        procs += [relay, mtor, paid]
        relay_port, mtor_port = await wait_ready(relay), await wait_ready(mtor)
        paid_port = await wait_ready(paid)
        progress("hubs up")
        direct_url = await direct.start()
        relay_url, mtor_url = f"ws://127.0.0.1:{relay_port}", f"ws://127.0.0.1:{mtor_port}"
        paid_url = f"ws://127.0.0.1:{paid_port}"
        procs.append(spawn("--role", "worker", "--url", direct_url))
        for url in (relay_url, relay_url, mtor_url, mtor_url, paid_url, paid_url):
            procs.append(spawn("--role", "worker", "--url", url))

        async with aiohttp.ClientSession() as session:
            via_relay = ViaHub("relay", relay_url, signed=False)
            via_mtor = ViaHub("mtor", mtor_url, signed=True)
            await asyncio.wait_for(direct.connected.wait(), 60)
            await wait_workers(session, f"http://127.0.0.1:{relay_port}", 2)
            await wait_workers(session, f"http://127.0.0.1:{mtor_port}", 2)
            await wait_workers(session, f"http://127.0.0.1:{paid_port}", 2)
            progress("workers registered")
            await via_relay.connect(session)
            await via_mtor.connect(session)
            via_paid = PaidHub(paid_url)
            await via_paid.connect(session)
            upkeep_pid = (await _get_json(session, f"http://127.0.0.1:{paid_port}/v1/ledger/status"))["process_pid"]
            progress("clients connected; measuring round trips")
            paths: list[Route] = [direct, via_relay, via_mtor, via_paid]
            for path in paths:  # warm up every path
                await latency_batch(path, 200, [])

            lat: dict[str, list[float]] = {p.name: [] for p in paths}
            for _ in range(rounds):
                for path in paths:
                    await latency_batch(path, batch, lat[path.name])

            progress("measuring throughput")
            rates: dict[str, dict[int, float]] = {"relay": {}, "mtor": {}, "paid": {}}
            cpu: dict[str, list[float]] = {"relay": [], "mtor": [], "paid": []}
            upkeep_cpu0, paid_done = cpu_seconds(upkeep_pid), 0
            for window in WINDOWS:
                samples: dict[str, list[float]] = {"relay": [], "mtor": [], "paid": []}
                for _ in range(tp_rounds):
                    for path, proc in ((via_relay, relay), (via_mtor, mtor), (via_paid, paid)):
                        rate, cpu_us = await throughput(path, window, window_s, proc.pid)
                        samples[path.name].append(rate)
                        cpu[path.name].append(cpu_us)
                        if path is via_paid:
                            paid_done += int(rate * window_s)
                for name, values in samples.items():
                    rates[name][window] = statistics.median(values)
            upkeep_us = (cpu_seconds(upkeep_pid) - upkeep_cpu0) / max(1, paid_done) * 1e6
            status = await _get_json(session, f"http://127.0.0.1:{paid_port}/v1/ledger/status")
        progress("done")
    finally:
        for proc in reversed(procs):  # workers first, so none logs its hub going away
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        await direct.stop()
        tmp.cleanup()

    return report(lat, rates, {k: statistics.median(v) for k, v in cpu.items()}, upkeep_us, status)


async def _get_json(session: Any, url: str) -> Any:
    async with session.get(url) as resp:
        return await resp.json()


def report(
    lat: dict[str, list[float]],
    rates: dict[str, dict[int, float]],
    cpu: dict[str, float],
    upkeep_us: float,
    status: dict[str, Any],
) -> int:
    med = {k: statistics.median(v) for k, v in lat.items()}
    p99 = {k: pct(v, 0.99) for k, v in lat.items()}
    n = len(lat["direct"])
    print(f"\nround trip at 1 in flight ({n} requests per path, ms)")
    print(f"  {'path':8} {'median':>8} {'p99':>8}   overhead vs direct: median  p99")
    for name in ("direct", "relay", "mtor", "paid"):
        extra = "" if name == "direct" else f"   {med[name] - med['direct']:>+21.3f} {p99[name] - p99['direct']:>+5.3f}"
        print(f"  {name:8} {med[name]:8.3f} {p99[name]:8.3f}{extra}")
    over_med = med["mtor"] - med["direct"]
    over_p99 = p99["mtor"] - p99["direct"]
    print("\nthroughput (intents/s, median of alternating windows)")
    print(f"  {'in flight':>9} {'relay':>9} {'mtor':>9} {'paid':>9} {'mtor/relay':>11} {'paid/mtor':>10}")
    for window in WINDOWS:
        r, m, pd = rates["relay"][window], rates["mtor"][window], rates["paid"][window]
        print(f"  {window:>9} {r:9.0f} {m:9.0f} {pd:9.0f} {m / r:11.2f} {pd / m:10.2f}")
    best_r, best_m, best_p = max(rates["relay"].values()), max(rates["mtor"].values()), max(rates["paid"].values())
    share = best_m / best_r
    paid_share = best_p / best_m
    print(f"  {'best':>9} {best_r:9.0f} {best_m:9.0f} {best_p:9.0f} {share:11.2f} {paid_share:10.2f}")
    print(
        f"  hub CPU per intent (median over windows): relay {cpu['relay']:.0f} us, mtor {cpu['mtor']:.0f} us,"
        f" paid {cpu['paid']:.0f} us (+{cpu['paid'] - cpu['mtor']:.0f} us for the ledger)"
    )
    print(
        f"  paid: the upkeep process used {upkeep_us:.0f} us of CPU per intent (settlement off the broker);"
        f" {status.get('settled_epochs')} epochs settled, {status.get('unsettled_receipts')} receipts waiting,"
        f" upkeep {status.get('state')}"
    )
    checks = [
        (f"mtor overhead median {over_med:.3f} ms <= {TARGET_MEDIAN_MS} ms", over_med <= TARGET_MEDIAN_MS),
        (f"mtor overhead p99 {over_p99:.3f} ms <= {TARGET_P99_MS} ms", over_p99 <= TARGET_P99_MS),
        (f"mtor throughput {share:.0%} of the minimal relay >= {TARGET_THROUGHPUT_SHARE:.0%}",
         share >= TARGET_THROUGHPUT_SHARE),
        (f"paid throughput {paid_share:.0%} of free mtor >= {TARGET_PAID_SHARE:.0%}", paid_share >= TARGET_PAID_SHARE),
    ]
    print("\ntargets")
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {text}")
    return 0 if all(ok for _, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, ~20 s)")
    parser.add_argument("--role", choices=("relay", "mtor", "paid", "worker"), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "relay":
        run_relay()
    elif args.role == "mtor":
        run_mtor(args.db)
    elif args.role == "paid":
        run_mtor(args.db, paid=True)
    elif args.role == "worker":
        run_worker(args.url)
    else:
        return asyncio.run(measure(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())

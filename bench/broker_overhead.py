"""What the MTOR broker costs, run as users run it, against a minimal relay in the same run.

    python bench/broker_overhead.py [--quick] [--no-paid] [--clients 2000]

Every hub and every worker is its own process, on 127.0.0.1 only, started
with the CLI's own defaults:

* direct: this process accepts one echo worker's connection itself and sends
  it `work` frames: the floor of any bus, one WebSocket hop.
* relay:  a minimal aiohttp relay (written below, ~40 lines) between clients and
  two echo workers: it forwards frames by guid and does nothing else.
* mtor:   `mtor broker serve` (free: journal, SafeQueue, limits, signed logins,
  health, metrics) between clients and two `mtor worker serve --intent echo`.
* paid:   `mtor broker serve --paid` (the ledger on its embedded chain, settlement
  in its own upkeep process), same workers; each of its users signs one
  cumulative spending authorisation of its welcome grant (a budget, as a
  client may) and sends it with every query.

Workers are `mtor worker serve --intent echo` with no --slots: what the echo
backend can batch (as many as the default chat backend). Requests are the
prompt "ping" from 8 users. It prints, beside the relay from the same run:

1. the round trip at 1 request in flight (median, p99) and mtor's overhead over direct;
2. intents/s at 128 in flight for relay, mtor and paid, and each hub's CPU
   microseconds per intent (from /proc), in windows that alternate between hubs,
   and the paid realm's upkeep process's CPU per intent (off the broker);
3. the broker's CPU per signed login (fresh keys, one after another);
4. the time for --clients clients to connect and log in at once (from 2
   processes and 40 loopback addresses: the broker caps logins under way per
   address), and the broker's CPU for it;

then the goals of issues 13 and 14, each met or missed.
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
# bench/ledger.py must not shadow the `ledger` package (the paid users sign with it)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.common import cpu_seconds, pct, progress  # noqa: E402

IN_FLIGHT = 128
USERS = 8
CONNECTOR_PROCESSES = 2
SOURCE_ADDRESSES = 40  # 127.0.0.2 .. 127.0.0.41
GOALS = {
    "free_share": 0.6,  # of the relay's throughput
    "free_cpu_us": 60.0,  # broker CPU per intent
    "paid_share": 0.5,  # of free
    "overhead_p50_ms": 0.3,
    "overhead_p99_ms": 1.5,
    "login_ms": 2.0,  # broker CPU per login
    "connect_s": 5.0,  # for 2,000 clients
}


# --- the relay (a child process) ---------------------------------------------


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

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/ws/worker", worker_socket)
        app.router.add_get("/ws/client", client_socket)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"READY {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


# --- clients -----------------------------------------------------------------


def signed_hello(account: Any, nonce: str) -> str:
    from broker.protocol import sign_challenge

    return orjson.dumps(
        {"type": "hello", "address": account.address, "nonce": nonce,
         "signature": sign_challenge(account.key, nonce, "client")}
    ).decode()


class Route:
    """One way to reach echo workers: send a request, get a future for its result."""

    name = ""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.sends: list[Callable[[str], Any]] = []
        self._turn = 0

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
                    fut.set_exception(RuntimeError(f"{self.name}: {msg}"))

    async def request(self) -> None:
        guid = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self.waiting[guid] = fut
        self._turn = (self._turn + 1) % len(self.sends)
        await self.sends[self._turn](self.make_frame(guid))
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
            self.sends = [ws.send_str]
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
    """``users`` connections to a hub (signed logins for mtor), requests spread over them."""

    def __init__(self, name: str, url: str, signed: bool) -> None:
        super().__init__()
        self.name = name
        self.url = url
        self.signed = signed
        self._readers: list[asyncio.Task[None]] = []

    def make_frame(self, guid: str) -> str:
        if not self.signed:
            return super().make_frame(guid)
        return orjson.dumps({"type": "submit_query", "guid": guid, "intent": "echo", "prompt": "ping"}).decode()

    async def connect(self, session: Any, users: int) -> None:
        from eth_account import Account

        for _ in range(users):
            ws = await session.ws_connect(self.url + "/ws/client")
            if self.signed:
                challenge = orjson.loads((await ws.receive()).data)
                await ws.send_str(signed_hello(Account.create(), challenge["nonce"]))
                welcome = orjson.loads((await ws.receive()).data)
                assert welcome["type"] == "welcome", welcome
            self.sends.append(ws.send_str)
            self._readers.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: Any) -> None:
        async for frame in ws:
            self.on_frame(frame.data)


class PaidHub(ViaHub):
    """Users of a paid broker: each signs one cumulative authorisation of its whole
    welcome grant (a budget), which the realm checks once, and sends it with every query."""

    BUDGET_9000 = 100  # a dev realm's welcome grant pays 10,000 echo queries

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name, url, signed=True)
        self._auth: list[dict[str, Any]] = []

    async def connect(self, session: Any, users: int) -> None:
        from eth_account import Account

        from ledger.authorisation import Terms, sign
        from ledger.units import ONE

        chain = await _realm_chain(session, self.url.replace("ws://", "http://"))
        domain = Terms(int(chain["chain_id"]), chain["ledger"])
        for _ in range(users):
            account = Account.create()
            ws = await session.ws_connect(self.url + "/ws/client")
            challenge = orjson.loads((await ws.receive()).data)
            await ws.send_str(signed_hello(account, challenge["nonce"]))
            assert orjson.loads((await ws.receive()).data)["type"] == "welcome"
            budget = self.BUDGET_9000 * ONE
            self._auth.append({"total": budget, "signature": sign(account.key, domain, account.address, budget)})
            self.sends.append(ws.send_str)
            self._readers.append(asyncio.create_task(self._read(ws)))

    async def request(self) -> None:
        guid = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self.waiting[guid] = fut
        self._turn = (self._turn + 1) % len(self.sends)
        frame = {"type": "submit_query", "guid": guid, "intent": "echo", "prompt": "ping", "authorisation": self._auth[self._turn]}
        await self.sends[self._turn](msgspec.json.encode(frame).decode())  # amounts past 64 bits: orjson refuses them
        await fut


async def _realm_chain(session: Any, http_url: str, timeout: float = 180) -> dict[str, Any]:
    """The paid realm's chain from ``/v1/realm`` (the embedded chain is deployed on first use)."""
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(http_url + "/v1/realm") as resp:
            if resp.status == 200:
                chain = (await resp.json())["chain"]
                if chain:
                    return dict(chain)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{http_url}: the paid realm's ledger never deployed")
        await asyncio.sleep(0.2)


async def _get_json(session: Any, url: str) -> Any:
    async with session.get(url) as resp:
        return await resp.json()


async def latency_batch(path: Route, n: int, into: list[float]) -> None:
    for _ in range(n):
        t0 = time.perf_counter()
        await path.request()
        into.append((time.perf_counter() - t0) * 1000)


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
    return done / elapsed, cpu / max(done, 1) * 1e6


# --- logins --------------------------------------------------------------------


async def login_cpu(url: str, pid: int, n: int) -> float:
    """The broker's CPU milliseconds per signed login, fresh keys one after another."""
    import aiohttp
    from eth_account import Account

    accounts = [Account.create() for _ in range(n)]
    async with aiohttp.ClientSession() as session:
        cpu0 = cpu_seconds(pid)
        for account in accounts:
            async with session.ws_connect(url + "/ws/client") as ws:
                challenge = orjson.loads((await ws.receive()).data)
                await ws.send_str(signed_hello(account, challenge["nonce"]))
                assert orjson.loads((await ws.receive()).data)["type"] == "welcome"
        return (cpu_seconds(pid) - cpu0) / n * 1000


def run_connector(url: str, count: int, first_ip: int) -> None:
    """A child: log in ``count`` clients at once when told GO; print how long it took."""
    from eth_account import Account

    from broker.gate import raise_fd_limit
    from mtor_cli.client import _retry_after

    raise_fd_limit()
    accounts = [Account.create() for _ in range(count)]
    print("READY", flush=True)
    sys.stdin.readline()

    async def main() -> None:
        import aiohttp

        sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{first_ip + i}", 0), limit=0)
            )
            for i in range(SOURCE_ADDRESSES // CONNECTOR_PROCESSES)
        ]
        sockets: list[Any] = []
        refused = 0

        async def one(i: int) -> None:
            nonlocal refused
            session = sessions[i % len(sessions)]
            while True:
                try:
                    ws = await session.ws_connect(url + "/ws/client")
                    break
                except aiohttp.WSServerHandshakeError as exc:  # 503 busy: retry as RealmClient does
                    refused += 1
                    await asyncio.sleep(_retry_after(exc))
            challenge = orjson.loads((await ws.receive()).data)
            await ws.send_str(signed_hello(accounts[i], challenge["nonce"]))
            assert orjson.loads((await ws.receive()).data)["type"] == "welcome"
            sockets.append(ws)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        print(f"DONE {time.perf_counter() - t0:.3f} {refused}", flush=True)
        sys.stdin.readline()  # hold the sockets until told to go
        for ws in sockets:
            await ws.close()
        for session in sessions:
            await session.close()

    asyncio.run(main())


async def connect_crowd(url: str, pid: int, clients: int) -> tuple[float, float, int]:
    """Seconds for ``clients`` to connect and log in at once, the broker's CPU seconds, 503s."""
    per = clients // CONNECTOR_PROCESSES
    procs = [
        _spawn_self("--role", "connector", "--url", url, "--count", str(per),
                    "--first-ip", str(2 + i * (SOURCE_ADDRESSES // CONNECTOR_PROCESSES)), stdin=True)
        for i in range(CONNECTOR_PROCESSES)
    ]
    try:
        for proc in procs:
            assert (await _line(proc, 120)) == "READY"
        cpu0 = cpu_seconds(pid)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        results = [(await _line(proc, 120)).split() for proc in procs]
        cpu = cpu_seconds(pid) - cpu0
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("BYE\n")
            proc.stdin.flush()
        return max(float(r[1]) for r in results), cpu, sum(int(r[2]) for r in results)
    finally:
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- processes -----------------------------------------------------------------


def _spawn_self(*args: str, stdin: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
    )


async def _line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    if not line:
        raise RuntimeError(f"child {proc.args} ended early")
    return line.strip()


async def wait_workers(session: Any, http_url: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(http_url + "/healthz") as resp:
                if (await resp.json())["workers"] >= count:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{http_url}: workers did not connect")


async def recogniser_settled(log: Path, timeout: float = 300) -> None:
    """Until the broker's log says its intent recogniser loaded, failed, or is not installed."""
    marks = ("intent recogniser loaded", "could not load", "intent recognition: rules only")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if any(mark in text for mark in marks):
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"{log}: the broker's intent recogniser did not settle in {timeout:g} s")


async def measure(quick: bool, paid: bool, clients: int) -> int:
    import aiohttp

    from tests.support.realm import free_port, spawn_broker, spawn_worker, url_for

    rounds, batch = (3, 100) if quick else (8, 250)
    tp_rounds, window_s = (1, 1.5) if quick else (3, 2.0)
    logins = 50 if quick else 200
    procs: list[subprocess.Popen[Any]] = []
    tmp = tempfile.TemporaryDirectory(prefix="mtor-bench-")
    root = Path(tmp.name)
    direct = Direct()
    try:
        relay = _spawn_self("--role", "relay")
        procs.append(relay)
        hubs = {"relay": (relay, f"ws://127.0.0.1:{int((await _line(relay, 60)).split()[1])}")}
        for name, extra in (("mtor", ()), ("paid", ("--paid",))):
            if name == "paid" and not paid:
                continue
            port = free_port()
            proc = spawn_broker(port, root / f"{name}.db", root / name, *extra)
            procs.append(proc)
            hubs[name] = (proc, url_for(port))
        direct_url = await direct.start()
        progress("hubs starting")
        async with aiohttp.ClientSession() as session:
            for name, (_, url) in hubs.items():
                await wait_workers(session, url.replace("ws://", "http://"), 0, timeout=180)
                for i in range(2):
                    procs.append(spawn_worker(url, root / f"{name}-worker{i}", "echo"))
            procs.append(spawn_worker(direct_url, root / "direct-worker", "echo"))
            for _, url in hubs.values():
                await wait_workers(session, url.replace("ws://", "http://"), 2)
            await asyncio.wait_for(direct.connected.wait(), 120)
            progress("workers registered")
            # A broker loads its intent recogniser (torch) on a thread at start:
            # measure the broker as it runs, not while that load competes for the CPU.
            for name in hubs:
                if name != "relay":
                    await recogniser_settled(root / name / "broker.log")
            progress("brokers' intent recognisers loaded (or not installed)")
            routes: dict[str, ViaHub] = {}
            for name, (_, url) in hubs.items():
                routes[name] = PaidHub(name, url) if name == "paid" else ViaHub(name, url, signed=name != "relay")
                await routes[name].connect(session, USERS)
            paid_status = f"{hubs['paid'][1].replace('ws://', 'http://')}/v1/ledger/status" if paid else ""
            progress("clients connected; measuring round trips")
            paths: list[Route] = [direct, routes["relay"], routes["mtor"]]
            for path in paths:  # warm up every path
                await latency_batch(path, 200, [])
            lat: dict[str, list[float]] = {p.name: [] for p in paths}
            for _ in range(rounds):
                for path in paths:
                    await latency_batch(path, batch, lat[path.name])

            progress(f"measuring throughput at {IN_FLIGHT} in flight")
            rates: dict[str, list[float]] = {name: [] for name in routes}
            cpu: dict[str, list[float]] = {name: [] for name in routes}
            for name, route in routes.items():  # warm up (the paid one grants its users' welcome $9000)
                await throughput(route, IN_FLIGHT, 1.0, hubs[name][0].pid)
            upkeep_pid = int((await _get_json(session, paid_status))["process_pid"]) if paid else 0
            upkeep_cpu0, paid_done = (cpu_seconds(upkeep_pid) if paid else 0.0), 0
            for _ in range(tp_rounds):
                for name, route in routes.items():
                    rate, cpu_us = await throughput(route, IN_FLIGHT, window_s, hubs[name][0].pid)
                    rates[name].append(rate)
                    cpu[name].append(cpu_us)
                    if name == "paid":
                        paid_done += int(rate * window_s)
            upkeep: dict[str, Any] = {}
            if paid:
                upkeep = await _get_json(session, paid_status)
                upkeep["us_per_intent"] = (cpu_seconds(upkeep_pid) - upkeep_cpu0) / max(1, paid_done) * 1e6

            progress(f"measuring {logins} logins")
            mtor_proc, mtor_url = hubs["mtor"]
            login_ms = await login_cpu(mtor_url, mtor_proc.pid, logins)
            progress(f"{clients} clients connecting at once")
            crowd_s, crowd_cpu, refused = await connect_crowd(mtor_url, mtor_proc.pid, clients)
        progress("done")
    finally:
        for proc in reversed(procs):  # workers first, so none logs its hub going away
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        await direct.stop()
        tmp.cleanup()

    return report(
        lat,
        {k: statistics.median(v) for k, v in rates.items()},
        {k: statistics.median(v) for k, v in cpu.items()},
        login_ms, clients, crowd_s, crowd_cpu, refused, upkeep,
    )


def report(
    lat: dict[str, list[float]], rates: dict[str, float], cpu: dict[str, float],
    login_ms: float, clients: int, crowd_s: float, crowd_cpu: float, refused: int, upkeep: dict[str, Any],
) -> int:
    med = {k: statistics.median(v) for k, v in lat.items()}
    p99 = {k: pct(v, 0.99) for k, v in lat.items()}
    print(f"\nround trip at 1 in flight ({len(lat['direct'])} requests per path, ms)")
    print(f"  {'path':8} {'median':>8} {'p99':>8}   over direct: median     p99")
    for name in ("direct", "relay", "mtor"):
        extra = "" if name == "direct" else f"   {med[name] - med['direct']:>+19.3f} {p99[name] - p99['direct']:>+7.3f}"
        print(f"  {name:8} {med[name]:8.3f} {p99[name]:8.3f}{extra}")
    over_med, over_p99 = med["mtor"] - med["direct"], p99["mtor"] - p99["direct"]
    print(f"\nthroughput at {IN_FLIGHT} in flight, {USERS} users, 2 echo workers with default slots "
          "(median of alternating windows)")
    print(f"  {'hub':6} {'intents/s':>10} {'of relay':>9} {'hub CPU us/intent':>18}")
    for name in rates:
        print(f"  {name:6} {rates[name]:10.0f} {rates[name] / rates['relay']:9.2f} {cpu[name]:18.1f}")
    free_share = rates["mtor"] / rates["relay"]
    if upkeep:
        print(f"  paid: the ledger adds {cpu['paid'] - cpu['mtor']:.0f} us of broker CPU per intent; its upkeep "
              f"process used {upkeep['us_per_intent']:.0f} us per intent (settlement off the broker): "
              f"{upkeep.get('settled_epochs')} epochs settled, {upkeep.get('unsettled_receipts')} receipts waiting, "
              f"upkeep {upkeep.get('state')}")
    print(f"\nlogin: {login_ms:.2f} ms of broker CPU per signed login")
    print(f"{clients} clients at once: all logged in after {crowd_s:.2f} s "
          f"(broker CPU {crowd_cpu:.2f} s, {crowd_cpu / clients * 1000:.2f} ms each; {refused} upgrades answered 503 busy)")
    checks = [
        (f"free throughput {free_share:.2f} of the relay >= {GOALS['free_share']}", free_share >= GOALS["free_share"]),
        (f"free broker CPU {cpu['mtor']:.0f} us per intent <= {GOALS['free_cpu_us']:.0f} us",
         cpu["mtor"] <= GOALS["free_cpu_us"]),
        (f"overhead p50 {over_med:.3f} ms <= {GOALS['overhead_p50_ms']} ms", over_med <= GOALS["overhead_p50_ms"]),
        (f"overhead p99 {over_p99:.3f} ms <= {GOALS['overhead_p99_ms']} ms", over_p99 <= GOALS["overhead_p99_ms"]),
        (f"login {login_ms:.2f} ms of broker CPU <= {GOALS['login_ms']} ms", login_ms <= GOALS["login_ms"]),
        (f"{clients} clients connected in {crowd_s:.2f} s <= {GOALS['connect_s']} s", crowd_s <= GOALS["connect_s"]),
    ]
    if "paid" in rates:
        paid_share = rates["paid"] / rates["mtor"]
        checks.append(
            (f"paid throughput {paid_share:.2f} of free >= {GOALS['paid_share']} (issue 14's)",
             paid_share >= GOALS["paid_share"])
        )
    print("\ngoals (issues 13 and 14)")
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {text}")
    return 0 if all(ok for _, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--no-paid", action="store_true", help="leave out the paid broker")
    parser.add_argument("--clients", type=int, default=2000, help="clients that connect at once (default 2000)")
    parser.add_argument("--role", choices=("relay", "connector"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first-ip", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "relay":
        run_relay()
        return 0
    if args.role == "connector":
        run_connector(args.url, args.count, args.first_ip)
        return 0
    os.environ.setdefault("MTOR_HOME", tempfile.mkdtemp(prefix="mtor-bench-client-"))
    return asyncio.run(measure(args.quick, not args.no_paid, args.clients))


if __name__ == "__main__":
    sys.exit(main())

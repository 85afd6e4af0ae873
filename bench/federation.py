"""What one federation hop costs, run as operators run it, against a local worker in the same run.

    python bench/federation.py [--quick]

Two realms, each its own processes on 127.0.0.1 with the CLI's defaults:
realm A (`mtor broker serve --realm a`) with one `mtor worker serve --intent
echo --model local`, and realm B with one `... --model remote`. Each pins the
other (`mtor federation key`, `mtor federation peer add ... --key`), so A
forwards what only B serves. Clients log in to A only. It prints, beside the
local path from the same run:

1. the round trip at 1 request in flight (median, p99) to A's own worker and
   through A to B's, and the hop's added latency (goal: <= 1 ms at the median);
2. intents/s at 128 in flight to A's worker and through A to B's (the same
   worker with its default slots on each side), and each broker's CPU per intent;
3. the gas of a realm-to-realm settlement claim (`claimFromRealm` against a
   realm's escrow, with a signed cumulative total, as `mtor federation settle`
   sends it) on the embedded chain, first and later claims, beside a plain
   $9000 transfer on the same chain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.common import cpu_seconds, pct, progress  # noqa: E402

IN_FLIGHT = 128
USERS = 8
GOAL_ADDED_P50_MS = 1.0


def mtor(home: Path, *args: str) -> str:
    from tests.support.realm import mtor_command, process_env

    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(mtor_command(*args), env=process_env(home), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"mtor {' '.join(args)} failed: {done.stderr}")
    return done.stdout


class Clients:
    """``USERS`` signed connections to realm A; requests spread over them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.sends: list[Callable[[str], Any]] = []
        self._turn = 0
        self._readers: list[asyncio.Task[None]] = []

    async def connect(self, session: Any) -> None:
        from eth_account import Account

        from broker.protocol import sign_challenge

        for _ in range(USERS):
            account = Account.create()
            ws = await session.ws_connect(self.url + "/ws/client")
            challenge = orjson.loads((await ws.receive()).data)
            await ws.send_str(orjson.dumps({
                "type": "hello", "address": account.address, "nonce": challenge["nonce"],
                "signature": sign_challenge(account.key, challenge["nonce"], "client"),
            }).decode())
            assert orjson.loads((await ws.receive()).data)["type"] == "welcome"
            self.sends.append(ws.send_str)
            self._readers.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: Any) -> None:
        async for frame in ws:
            msg = orjson.loads(frame.data)
            if msg["type"] in ("result", "error"):
                fut = self.waiting.pop(msg.get("guid"), None)
                if fut is not None:
                    if msg["type"] == "result":
                        fut.set_result(None)
                    else:
                        fut.set_exception(RuntimeError(str(msg)))

    async def request(self, model: str) -> None:
        guid = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self.waiting[guid] = fut
        self._turn = (self._turn + 1) % len(self.sends)
        await self.sends[self._turn](orjson.dumps(
            {"type": "submit_query", "guid": guid, "intent": "echo", "model": model, "prompt": "ping"}
        ).decode())
        await fut


async def latency(clients: Clients, model: str, n: int, into: list[float]) -> None:
    for _ in range(n):
        t0 = time.perf_counter()
        await clients.request(model)
        into.append((time.perf_counter() - t0) * 1000)


async def throughput(clients: Clients, model: str, seconds: float, pids: list[int]) -> tuple[float, list[float]]:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def lane() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await clients.request(model)
            done += 1

    t0, cpu0 = time.perf_counter(), [cpu_seconds(p) for p in pids]
    await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
    elapsed = time.perf_counter() - t0
    return done / elapsed, [(cpu_seconds(p) - c) / max(done, 1) * 1e6 for p, c in zip(pids, cpu0, strict=True)]


async def wait_for(session: Any, url: str, check: Callable[[Any], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as resp:
                if check(await resp.json()):
                    return
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


async def measure(quick: bool) -> int:
    import aiohttp

    from tests.support.realm import free_port, spawn_broker, spawn_worker, url_for

    rounds, batch = (3, 100) if quick else (6, 250)
    tp_rounds, window_s = (1, 1.5) if quick else (3, 2.0)
    procs: list[subprocess.Popen[Any]] = []
    tmp = tempfile.TemporaryDirectory(prefix="mtor-bench-fed-")
    root = Path(tmp.name)
    ports = {"a": free_port(), "b": free_port()}
    urls = {n: url_for(p) for n, p in ports.items()}
    dbs = {n: root / n / "broker.db" for n in ports}
    try:
        keys = {n: json.loads(mtor(root / n, "federation", "key", "--db", str(dbs[n]), "--json"))["address"]
                for n in ports}
        for me, other in (("a", "b"), ("b", "a")):
            mtor(root / me, "federation", "peer", "add", urls[other], "--name", other, "--key", keys[other],
                 "--db", str(dbs[me]))
        progress("realms pinned each other; starting brokers and workers")
        brokers = {}
        for n in ports:
            brokers[n] = spawn_broker(ports[n], dbs[n], root / n, "--realm", n)
            procs.append(brokers[n])
        for n, model in (("a", "local"), ("b", "remote")):
            procs.append(spawn_worker(urls[n], root / f"{n}-worker", "echo", model))
        http_a = urls["a"].replace("ws://", "http://")
        async with aiohttp.ClientSession() as session:
            await wait_for(
                session, http_a + "/v1/workers",
                lambda d: {m for w in d["workers"] for c in w["capabilities"] for m in c["models"]} >= {"local", "remote"},
                "A to see its worker and B's pool",
            )
            progress("A serves local and remote; connecting clients")
            clients = Clients(urls["a"])
            await clients.connect(session)
            for model in ("local", "remote"):
                await latency(clients, model, 200, [])
            lat: dict[str, list[float]] = {"local": [], "remote": []}
            for _ in range(rounds):
                for model in lat:
                    await latency(clients, model, batch, lat[model])
            progress(f"measuring throughput at {IN_FLIGHT} in flight")
            pids = [brokers["a"].pid, brokers["b"].pid]
            rates: dict[str, list[float]] = {"local": [], "remote": []}
            cpu: dict[str, list[list[float]]] = {"local": [], "remote": []}
            for model in rates:
                await throughput(clients, model, 1.0, pids)
            for _ in range(tp_rounds):
                for model in rates:
                    rate, per = await throughput(clients, model, window_s, pids)
                    rates[model].append(rate)
                    cpu[model].append(per)
            async with session.get(http_a + "/v1/federation") as resp:
                status = await resp.json()
        progress("done")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        tmp.cleanup()
    progress("gas of a realm-to-realm claim")
    return report(lat, rates, cpu, status, claim_gas())


def claim_gas() -> dict[str, int]:
    """Gas of realm-to-realm claims on a fresh embedded chain, and of a token transfer there."""
    import secrets

    from eth_account import Account

    from broker.federation.keys import RealmKey
    from broker.federation.settlement import Escrow, sign_ack
    from broker.protocol import Ack
    from ledger import Ledger, LedgerConfig
    from ledger import realms as R
    from ledger import wallet as W
    from ledger.units import ONE

    payer, payee = RealmKey(secrets.token_bytes(32)), RealmKey(secrets.token_bytes(32))
    with tempfile.TemporaryDirectory(prefix="mtor-bench-gas-") as tmp, Ledger(
        LedgerConfig(Path(tmp) / "data", welcome_grant=0)
    ) as led:
        led.deploy()
        with led.session() as s:
            account, sender = Account.from_key(payer.secret), Account.from_key(payee.secret)
            W.faucet(s, account)
            R.fund(s, account, 10 * ONE)
            escrow = Escrow(s.deployment.chain_id, s.deployment.ledger)
            gas = {}
            for name, total in (("first claim", ONE), ("later claim", 2 * ONE)):
                ack = sign_ack(Ack(seq=1, total=total), payer, payee.address, escrow)
                assert ack.signature is not None
                done = R.claim(s.chain, escrow.contract, sender, payer.address, payee.address, total, ack.signature)
                gas[name] = int(done["gas"])
            rc = s.chain.transact(account, s.token.functions.transfer(payee.address, ONE), what="a transfer")
            gas["token transfer"] = int(rc["gasUsed"])
    return gas


def report(lat: dict[str, list[float]], rates: dict[str, list[float]], cpu: dict[str, list[list[float]]],
           status: dict[str, Any], gas: dict[str, int]) -> int:
    med = {k: statistics.median(v) for k, v in lat.items()}
    p99 = {k: pct(v, 0.99) for k, v in lat.items()}
    added_p50, added_p99 = med["remote"] - med["local"], p99["remote"] - p99["local"]
    print(f"\nround trip at 1 in flight ({len(lat['local'])} requests per path, ms)")
    print(f"  {'path':24} {'median':>8} {'p99':>8}")
    print(f"  {'A -> A worker (local)':24} {med['local']:8.3f} {p99['local']:8.3f}")
    print(f"  {'A -> B -> B worker':24} {med['remote']:8.3f} {p99['remote']:8.3f}")
    print(f"  {'added by the hop':24} {added_p50:+8.3f} {added_p99:+8.3f}")
    rate = {k: statistics.median(v) for k, v in rates.items()}
    cpu_a = {k: statistics.median(c[0] for c in v) for k, v in cpu.items()}
    cpu_b = {k: statistics.median(c[1] for c in v) for k, v in cpu.items()}
    print(f"\nthroughput at {IN_FLIGHT} in flight, {USERS} users, one echo worker with default slots per realm")
    print(f"  {'path':24} {'intents/s':>10} {'of local':>9} {'A CPU us':>9} {'B CPU us':>9}")
    for name, label in (("local", "A -> A worker (local)"), ("remote", "A -> B -> B worker")):
        print(f"  {label:24} {rate[name]:10.0f} {rate[name] / rate['local']:9.2f} {cpu_a[name]:9.1f} {cpu_b[name]:9.1f}")
    peer = (status.get("peers") or [{}])[0]
    traffic = (peer.get("link") or {}).get("traffic", {})
    print(f"\nA's link to B: {traffic.get('forwarded', 0)} forwarded, {traffic.get('results', 0)} results, "
          f"{traffic.get('receipts', 0)} receipts, {traffic.get('failed', 0)} failed")
    print("\ngas of a realm-to-realm settlement claim (claimFromRealm, embedded chain)")
    for name, used in gas.items():
        print(f"  {name:24} {used:10,} {used / gas['token transfer']:6.2f}x a token transfer")
    checks = [(f"added latency p50 {added_p50:.3f} ms <= {GOAL_ADDED_P50_MS} ms", added_p50 <= GOAL_ADDED_P50_MS)]
    print("\ngoals (issue 17)")
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {text}")
    return 0 if all(ok for _, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    args = parser.parse_args()
    os.environ.setdefault("MTOR_HOME", tempfile.mkdtemp(prefix="mtor-bench-client-"))
    return asyncio.run(measure(args.quick))


if __name__ == "__main__":
    sys.exit(main())

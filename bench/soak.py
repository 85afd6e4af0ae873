"""Soak: N clients x M workers for a while; throughput, latency, errors, broker memory.

    python bench/soak.py [--clients 1000] [--workers 64] [--duration 300] [--think 0.0]

On 127.0.0.1: a broker process (`mtor broker serve`), one process running
``--workers`` echo workers (worker.Worker with the echo backend, 2 slots
each), and ``--clients`` RealmClients in this process, each asking echo
questions in a closed loop (the next one when the last is answered, after
``--think`` seconds). Every ``--every`` seconds it prints completed intents,
the window's throughput and the broker's resident memory; at the end the
whole run's throughput, p50/p99 latency, errors by code, and the broker's
memory at start, peak and end (growth with a steady load would be a leak).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.realm import (
    free_port,
    process_env,
    spawn_broker,
    stop_process,
    url_for,
    wait_healthy,
    wait_workers,
)

PROMPT = "soak test words for the echo worker"


def serve_workers(url: str, count: int) -> None:
    """Worker mode (a child process): ``count`` echo workers until SIGTERM."""
    from eth_account import Account

    from worker import Device, Worker, WorkerConfig
    from worker.backends.echo import EchoBackend

    async def run() -> None:
        workers = [
            Worker(WorkerConfig(broker_url=url, slots=2, name=f"soak-{i}"), [EchoBackend(None, Device())],
                   Account.create())
            for i in range(count)
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        for w in workers:
            await w.stop()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()


async def client(url: str, deadline: float, think: float, tally: Tally) -> None:
    from mtor_cli.client import RealmClient, RealmError

    try:
        async with RealmClient(url, connect_timeout=60.0) as realm:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    await realm.ask(PROMPT, intent="echo", timeout=60)
                    tally.latencies.append(time.perf_counter() - t0)
                except RealmError as exc:
                    tally.errors[exc.code] += 1
                if think:
                    await asyncio.sleep(think)
    except RealmError as exc:
        tally.errors["connect:" + exc.code] += 1


async def run(args: argparse.Namespace, root: Path) -> int:
    from eth_account import Account  # noqa: F401 - warm the import before the clock starts

    port = free_port()
    url = url_for(port)
    broker = spawn_broker(port, root / "broker.db", root / "broker")
    workers: Any = None
    try:
        wait_healthy(url)
        home = root / "workers"
        home.mkdir()
        with open(home / "workers.log", "ab") as log:
            workers = subprocess.Popen(
                [sys.executable, __file__, "workers", url, str(args.workers)],
                env=process_env(home), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        await asyncio.to_thread(wait_workers, url, args.workers, "echo", 300)
        start_rss = rss_mib(broker.pid)
        tally = Tally()
        t0 = time.monotonic()
        deadline = t0 + args.duration
        tasks = [asyncio.create_task(client(url, deadline, args.think, tally)) for _ in range(args.clients)]
        peak = start_rss
        last_done, last_t = 0, t0
        print(f"soak: {args.clients} clients x {args.workers} workers for {args.duration:g} s "
              f"(broker RSS at start {start_rss:.1f} MiB)")
        while not all(t.done() for t in tasks):
            await asyncio.sleep(min(args.every, max(0.1, deadline - time.monotonic() + 0.1)))
            now = time.monotonic()
            rss = rss_mib(broker.pid)
            peak = max(peak, rss)
            done = len(tally.latencies)
            print(f"  {now - t0:6.1f} s: {done} completed, {(done - last_done) / max(now - last_t, 1e-9):.0f}/s, "
                  f"{sum(tally.errors.values())} errors, broker RSS {rss:.1f} MiB", flush=True)
            last_done, last_t = done, now
        took = time.monotonic() - t0
        end_rss = rss_mib(broker.pid)
        lat = sorted(tally.latencies)
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(0.99 * (len(lat) - 1) + 0.5))] * 1000 if lat else float("nan")
        print(f"  throughput {len(lat) / took:.0f} intents/s ({len(lat)} in {took:.1f} s); "
              f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        print(f"  errors: {sum(tally.errors.values())} {dict(tally.errors)}")
        print(f"  broker RSS: start {start_rss:.1f} MiB, peak {peak:.1f} MiB, end {end_rss:.1f} MiB")
        return 0 if not tally.errors and broker.poll() is None else 1
    finally:
        if workers is not None:
            stop_process(workers)
        stop_process(broker)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "workers":
        serve_workers(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds")
    parser.add_argument("--think", type=float, default=0.0, help="seconds a client waits between questions")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between progress lines")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mtor-soak-") as tmp:
        os.environ["MTOR_HOME"] = str(Path(tmp) / "clients")
        raise SystemExit(asyncio.run(run(args, Path(tmp))))


if __name__ == "__main__":
    main()

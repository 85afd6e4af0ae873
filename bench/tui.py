"""How the TUI copes with a busy realm: key-press latency and CPU, against an idle app.

    python bench/tui.py [--seconds 5] [--workers 1000] [--rate 100]

A synthetic realm of 1,000 workers (4 slots each, a tenth quarantined) runs
100 intents a second through queued -> running -> done, and its stream feeds
the real app (mtor_cli.tui.app.MtorApp) through the same RealmFeed interface
the broker's client does. The app renders through a driver that takes the
real terminal output (every escape sequence of every frame) and throws it
away, so rendering costs what it costs in a terminal.

Three phases of the same length, in one run:

* idle:        the app with no realm updates at all (the baseline);
* broker-like: pushes coalesced as the broker sends them (each topic at most
               every 0.15 s: a 1,000-worker snapshot, queue, counters and the
               intent events of that interval);
* uncoalesced: every change pushed on its own, 10 ms apart (about 1,200
               pushes a second, each intent event with a fresh worker snapshot),
               which only the app's own coalescing can absorb.

In every phase a key is typed into the prompt every 100 ms; its latency is
the time from the key event to the first frame written to the terminal that
shows it, and also the process CPU time spent in that span (the app's own
work, which a busy shared machine does not inflate). CPU is this process's
CPU time per second of wall clock (one core = 100%), which includes the
synthetic producer. "Kept up" compares updates
pushed with updates folded, and the producer's schedule slip says whether the
event loop fell behind (or the process waited for a core: the machine's load
average is printed too). Bounded: about 4 x --seconds in all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from textual import events  # noqa: E402
from textual.drivers.headless_driver import HeadlessDriver  # noqa: E402

from broker.protocol import Accepted, Result, Stats, SubmitQuery, Token  # noqa: E402
from mtor_cli.tui import AnswerEvent, ConnectionStatus, FeedEvent  # noqa: E402
from mtor_cli.tui.app import MtorApp  # noqa: E402

TARGET_P95_MS = 50.0
SIZE = (120, 40)
KEY_INTERVAL_S = 0.1
ME = "0x" + "5e" * 20
INTENTS = ("chat", "imagine", "vision", "speech")


class TerminalSink(HeadlessDriver):
    """A driver that renders like a terminal driver and timestamps every frame it writes."""

    @property
    def is_headless(self) -> bool:
        return False  # so that App._display renders every frame to escape sequences

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames = 0
        self.bytes = 0
        self.expect: str | None = None
        self.seen = asyncio.Event()
        self.seen_at = (0.0, 0.0)  # (wall, process CPU) when the expected text was written

    def write(self, data: str) -> None:
        self.frames += 1
        self.bytes += len(data)
        if self.expect is not None and self.expect in data:
            self.expect = None
            self.seen_at = (time.perf_counter(), time.process_time())
            self.seen.set()

    def flush(self) -> None:
        """Nothing buffered."""


@dataclass
class Intent:
    guid: str
    intent: str
    user: str
    worker: str
    queued_at: float
    runs_at: float
    done_at: float
    state: str = "queued"


@dataclass
class SyntheticRealm:
    """Workers and intents moving through their states as time passes."""

    workers: int
    rate: float
    rng: random.Random = field(default_factory=lambda: random.Random(9000))

    def __post_init__(self) -> None:
        self.snapshot: list[dict[str, Any]] = []
        for n in range(self.workers):
            intent = INTENTS[n % len(INTENTS)]
            self.snapshot.append({
                "id": f"w{n:04d}", "name": "", "address": f"0x{n:040x}", "version": "0.1.0",
                "capabilities": [{"intent": intent, "models": [f"{intent}-model"], "params": {}}],
                "slots": 4, "running": 0,
                "health": {"state": "quarantined" if n % 10 == 9 else "healthy",
                           "latency_ms": 1.0 + n % 7, "failure_rate": 0.6 if n % 10 == 9 else 0.01},
            })
        self.live: dict[str, Intent] = {}
        self.completed = 0
        self.started = time.monotonic()
        self._made = 0
        self._next_worker = 0

    def advance(self, now: float) -> list[dict[str, Any]]:
        """The intent events (broker shape) between the last call and ``now``."""
        out: list[dict[str, Any]] = []
        due = int((now - self.started) * self.rate)
        while self._made < due:
            self._made += 1
            worker = self.snapshot[self._next_worker]
            self._next_worker = (self._next_worker + 7) % self.workers
            intent = Intent(f"{self._made:032x}", worker["capabilities"][0]["intent"], ME, worker["id"],
                            now, now + self.rng.uniform(0.01, 0.3), now + self.rng.uniform(0.5, 3.0))
            self.live[intent.guid] = intent
            out.append(self._event(intent, now))
        for intent in list(self.live.values()):
            worker = self.snapshot[int(intent.worker[1:])]
            if intent.state == "queued" and now >= intent.runs_at:
                intent.state = "running"
                worker["running"] += 1
                out.append(self._event(intent, now))
            elif intent.state == "running" and now >= intent.done_at:
                intent.state = "done"
                worker["running"] -= 1
                self.completed += 1
                del self.live[intent.guid]
                out.append(self._event(intent, now))
        return out

    @staticmethod
    def _event(intent: Intent, now: float) -> dict[str, Any]:
        return {"guid": intent.guid, "user": intent.user, "intent": intent.intent, "state": intent.state,
                "worker": None if intent.state == "queued" else intent.worker, "attempts": 1,
                "ts": time.time() - (time.monotonic() - now)}

    def queue(self) -> Stats:
        depth: dict[str, int] = {}
        for intent in self.live.values():
            if intent.state == "queued":
                depth[intent.intent] = depth.get(intent.intent, 0) + 1
        return Stats(topic="queue", data={"intents": {k: {"depth": v} for k, v in depth.items()},
                                          "total": sum(depth.values())})

    def stats(self) -> Stats:
        busy = sum(1 for i in self.live.values() if i.state == "running")
        return Stats(topic="stats", data={
            "workers": self.workers, "slots_busy": busy, "slots_total": 4 * self.workers,
            "queued": len(self.live) - busy, "running": busy,
            "intents": {"completed": self.completed, "failed": 0},
        })

    def workers_push(self) -> Stats:
        return Stats(topic="workers", data={"workers": self.snapshot})


class SyntheticFeed:
    """A RealmFeed whose realm is simulated; ``mode`` is idle, broker-like or uncoalesced."""

    label = "synthetic realm"

    def __init__(self, realm: SyntheticRealm) -> None:
        self.realm = realm
        self.mode = "idle"
        self.pushed = 0
        self.slip_s = 0.0
        self._closed = asyncio.Event()
        self._mode_changed = asyncio.Event()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.slip_s = 0.0
        self._mode_changed.set()

    async def updates(self) -> AsyncIterator[FeedEvent]:
        yield ConnectionStatus("online", address=ME)
        for push in (self.realm.workers_push(), self.realm.queue(), self.realm.stats()):
            yield push
        while not self._closed.is_set():
            if self.mode == "idle":
                self._mode_changed.clear()
                await self._mode_changed.wait()
                continue
            tick = 0.15 if self.mode == "broker-like" else 0.01
            due = time.monotonic() + tick
            while not self._closed.is_set() and self.mode != "idle":
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                self.slip_s = max(self.slip_s, time.monotonic() - due)
                due += tick
                for push in self._pushes(self.realm.advance(time.monotonic())):
                    self.pushed += 1
                    yield push

    def _pushes(self, changes: list[dict[str, Any]]) -> list[FeedEvent]:
        # Snapshots are built once a tick, so the producer's own cost stays small.
        snapshots = [self.realm.workers_push(), self.realm.queue(), self.realm.stats()]
        if self.mode == "broker-like":
            return [Stats(topic="intents", data={"events": changes, "live": []}), *snapshots]
        pushes: list[FeedEvent] = []
        for change in changes:
            pushes += [Stats(topic="intents", data={"events": [change], "live": []}), *snapshots]
        return pushes

    async def submit(self, query: SubmitQuery) -> AsyncIterator[AnswerEvent]:
        yield Accepted(guid=query.guid, intent="chat")
        for word in query.prompt.split():
            yield Token(guid=query.guid, text=word + " ")
        yield Result(guid=query.guid, intent="chat", text=query.prompt, worker="w0000")

    async def cancel(self, guid: str) -> None:
        """The synthetic realm finishes everything anyway."""

    async def close(self) -> None:
        self._closed.set()
        self._mode_changed.set()


@dataclass
class Phase:
    name: str
    latencies_ms: list[float]
    cpu_latencies_ms: list[float]
    cpu_pct: float
    pushes_per_s: float
    folded_per_s: float
    repaints_per_s: float
    frames_per_s: float
    slip_ms: float
    missed: int


async def run_phase(app: MtorApp, feed: SyntheticFeed, sink: TerminalSink, name: str, seconds: float) -> Phase:
    feed.set_mode(name)
    await asyncio.sleep(0.5)  # let the phase reach its steady state
    pushed0, folded0, repaints0, frames0 = feed.pushed, app.state.updates_applied, app.repaints, sink.frames
    cpu0, wall0 = time.process_time(), time.monotonic()
    latencies: list[float] = []
    cpu_latencies: list[float] = []
    missed = 0
    typed = ""
    letters = "qwertyuiopasdfghjklzxcvbnm"
    while time.monotonic() - wall0 < seconds:
        if len(typed) >= 40:  # keep the prompt's text short; Ctrl+U clears it
            sink.send_message(events.Key("ctrl+u", None))
            typed = ""
            await asyncio.sleep(KEY_INTERVAL_S)
        char = letters[len(latencies) % len(letters)]
        typed += char
        sink.expect, sink.seen = typed[-8:], asyncio.Event()
        started, started_cpu = time.perf_counter(), time.process_time()
        sink.send_message(events.Key(char, char))
        try:
            await asyncio.wait_for(sink.seen.wait(), 1.0)
            latencies.append((sink.seen_at[0] - started) * 1000)
            cpu_latencies.append((sink.seen_at[1] - started_cpu) * 1000)
        except TimeoutError:
            missed += 1
            sink.expect = None
        await asyncio.sleep(max(0.0, KEY_INTERVAL_S - (time.perf_counter() - started)))
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    return Phase(
        name=name,
        latencies_ms=latencies,
        cpu_latencies_ms=cpu_latencies,
        cpu_pct=100 * cpu / wall,
        pushes_per_s=(feed.pushed - pushed0) / wall,
        folded_per_s=(app.state.updates_applied - folded0) / wall,
        repaints_per_s=(app.repaints - repaints0) / wall,
        frames_per_s=(sink.frames - frames0) / wall,
        slip_ms=feed.slip_s * 1000,
        missed=missed,
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(seconds: float, workers: int, rate: float) -> int:
    load_before = os.getloadavg()[0]
    realm = SyntheticRealm(workers, rate)
    feed = SyntheticFeed(realm)
    app = MtorApp(feed)
    app.driver_class = TerminalSink  # type: ignore[assignment]
    task = asyncio.create_task(app.run_async(headless=False, size=SIZE))
    while not isinstance(app._driver, TerminalSink) or app.state.updates_applied < 4:
        await asyncio.sleep(0.05)
    sink = app._driver
    await asyncio.sleep(1.0)
    phases = [await run_phase(app, feed, sink, name, seconds) for name in ("idle", "broker-like", "uncoalesced")]
    feed.set_mode("idle")
    await asyncio.sleep(0.3)
    final_workers = len(app.state.take_workers())
    app.exit()
    await task

    print(f"MTOR TUI under load: {workers} workers, {rate:g} intents/s, {SIZE[0]}x{SIZE[1]} terminal, "
          f"{seconds:g} s per phase, a key every {KEY_INTERVAL_S * 1000:.0f} ms")
    # Latency on a shared machine includes waiting for a core: say how busy it was.
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} before and "
          f"{os.getloadavg()[0]:.1f} after the run")
    header = (f"{'phase':<12} {'keys':>5} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'cpu p50':>8} {'cpu p95':>8} "
              f"{'missed':>6} {'CPU %':>6} {'pushes/s':>9} {'folded/s':>9} {'repaints/s':>10} {'frames/s':>9} "
              f"{'slip ms':>8}")
    print(header)
    for p in phases:
        print(f"{p.name:<12} {len(p.latencies_ms):>5} {statistics.median(p.latencies_ms or [float('nan')]):>7.1f} "
              f"{percentile(p.latencies_ms, 0.95):>7.1f} {max(p.latencies_ms or [float('nan')]):>7.1f} "
              f"{statistics.median(p.cpu_latencies_ms or [float('nan')]):>8.1f} "
              f"{percentile(p.cpu_latencies_ms, 0.95):>8.1f} "
              f"{p.missed:>6} {p.cpu_pct:>6.1f} {p.pushes_per_s:>9.0f} {p.folded_per_s:>9.0f} "
              f"{p.repaints_per_s:>10.1f} {p.frames_per_s:>9.1f} {p.slip_ms:>8.1f}")
    print("(p50/p95/max: wall clock from key event to the frame that shows it; cpu p50/p95: this "
          "process's CPU time in that span, the work the app did, free of waiting for a core)")
    idle = phases[0]
    ok = True
    for p in phases[1:]:
        p95 = percentile(p.latencies_ms, 0.95)
        kept_up = p.folded_per_s >= 0.99 * p.pushes_per_s
        verdict = "meets" if p95 <= TARGET_P95_MS and p.missed == 0 else "MISSES"
        ok = ok and verdict == "meets" and kept_up
        print(f"{p.name}: p95 key latency {p95:.1f} ms vs idle {percentile(idle.latencies_ms, 0.95):.1f} ms "
              f"({verdict} the {TARGET_P95_MS:.0f} ms target; CPU-only p95 "
              f"{percentile(p.cpu_latencies_ms, 0.95):.1f} ms vs idle {percentile(idle.cpu_latencies_ms, 0.95):.1f} ms); CPU {p.cpu_pct:.1f}% vs idle {idle.cpu_pct:.1f}% "
              f"({p.cpu_pct / max(idle.cpu_pct, 0.1):.1f}x); {p.pushes_per_s:.0f} pushes/s folded into "
              f"{p.repaints_per_s:.1f} repaints/s ({'kept up' if kept_up else 'FELL BEHIND'})")
    print(f"workers shown at the end: {final_workers} of {workers}")
    return 0 if ok and final_workers == workers else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase (default 5)")
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="intents per second (default 100)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seconds, args.workers, args.rate)))

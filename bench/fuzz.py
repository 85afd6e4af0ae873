"""Fuzz the broker's sockets while a normal client keeps working.

    python bench/fuzz.py [--frames 10000] [--seed 1]

A broker and an echo worker run as processes on 127.0.0.1. A normal client
first asks 200 echo questions on a quiet realm (the baseline), then keeps
asking while fuzzers send ``--frames`` mutated and random frames to
/ws/client and /ws/worker, before and after logging in: bad JSON, wrong
types, huge fields, unknown types, binary frames, truncated frames, mutated
valid messages, floods, deeply nested JSON (up to 200,000 levels) and
oversized frames (past the broker's limit, and past the transport's). Beside
them, slow-loris sockets hold connections open: idle ones, HTTP upgrade
headers trickled a byte at a time, and a WebSocket frame trickled a byte at
a time after the upgrade. It prints the frames sent by kind, the frames
answered with an error (by code), broker crashes (the process died or
/healthz stopped answering; target 0), fuzz connections the broker closed,
how long the broker let each slow-loris socket live, and the normal client's
p50/p99 latency during the run against the quiet run. Exit status 1 on a
crash, a failed normal request, or a slow-loris socket never closed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.protocol import sign_challenge
from tests.support.realm import (
    free_port,
    get_json,
    spawn_broker,
    spawn_worker,
    stop_process,
    url_for,
    wait_healthy,
    wait_workers,
)

KINDS = (
    "bad_json", "wrong_types", "huge", "unknown_type", "binary", "truncated", "mutated", "deep", "oversized", "flood",
)
LOGIN_TIMEOUT_S = 10.0  # the broker's default login_timeout_s


def valid_client(rng: random.Random) -> dict[str, Any]:
    return rng.choice(
        [
            {"type": "submit_query", "guid": uuid.uuid4().hex, "prompt": "fuzz me", "intent": "echo"},
            {"type": "cancel", "guid": uuid.uuid4().hex},
            {"type": "subscribe", "topics": ["stats"]},
            {"type": "ping", "nonce": "x", "ts": 1.0},
            {"type": "hello", "address": "0x" + "ab" * 20, "signature": "0x00", "nonce": "n"},
        ]
    )


def valid_worker(rng: random.Random) -> dict[str, Any]:
    guid = uuid.uuid4().hex
    return rng.choice(
        [
            {"type": "result", "guid": guid, "text": "x", "usage": {"completion_tokens": 1}},
            {"type": "token", "guid": guid, "text": "x", "index": 0},
            {"type": "progress", "guid": guid, "step": 1, "total": 2},
            {"type": "failed", "guid": guid, "code": "x", "message": "y", "retryable": True},
            {"type": "pong", "nonce": "n"},
            {"type": "register", "address": "0x" + "cd" * 20, "signature": "0x00", "nonce": "n", "capabilities": []},
        ]
    )


def junk_value(rng: random.Random) -> Any:
    return rng.choice(
        [None, True, -1, 2**70, 1.5e308, "", "x" * rng.randint(1, 5000), [], [1, "a", None], {"a": {"b": []}},
         "\u0000\ud7ff\uffff", "0x" + "ff" * 100]
    )


def _dumps(obj: Any) -> str:
    # The standard library's encoder: it writes integers past 64 bits, which orjson refuses.
    return json.dumps(obj)


def make_frame(kind: str, rng: random.Random, worker: bool) -> str | bytes:
    base = valid_worker(rng) if worker else valid_client(rng)
    if kind == "bad_json":
        return rng.choice(["{", "}", "[1,2", "{'type': 'ping'}", "null", "nan", '{"type": "ping",}', "\x00\x01", "💥" * 10])
    if kind == "wrong_types":
        field = rng.choice([k for k in base if k != "type"] or ["type"])
        return _dumps({**base, field: junk_value(rng)})
    if kind == "huge":
        size = rng.choice([100_000, 1_000_000, 9 * 1024 * 1024]) if rng.random() < 0.02 else rng.choice([10_000, 100_000])
        field = rng.choice(["prompt", "guid", "text", "nonce", "zzz"])
        return _dumps({**base, field: "A" * size})
    if kind == "unknown_type":
        return _dumps({**base, "type": rng.choice(["work", "welcome", "admin", "", "SUBMIT_QUERY", 7])})
    if kind == "binary":
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 512)))
    if kind == "deep":
        # Nested past any sane depth: a recursive decoder with py_ecc's recursion
        # limit overflows the C stack on these (SIGSEGV) instead of raising.
        depth = rng.choice([2_000, 50_000, 200_000])
        nested = "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
        return _dumps({**base, "params": 0}).replace('"params": 0', '"params": ' + nested)
    if kind == "oversized":
        # Past max_frame_bytes (8 MiB: an error, the socket stays), or past the
        # transport's limit (2 x that + 1 MiB: the socket is closed).
        return _dumps({**base, "prompt": "A" * rng.choice([9, 20]) * 1024 * 1024})
    if kind == "truncated":
        text = _dumps(base)
        return text[: rng.randint(1, max(1, len(text) - 1))]
    # mutated: a valid message with fields dropped, added or retyped
    frame = dict(base)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        keys = [k for k in frame if k != "type"]
        if op < 0.3 and keys:
            del frame[rng.choice(keys)]
        elif op < 0.6:
            frame[rng.choice(["extra", "guid", "attachments", "params", "slots", "max_price"])] = junk_value(rng)
        elif keys:
            frame[rng.choice(keys)] = junk_value(rng)
    return _dumps(frame)


class Fuzzer:
    def __init__(self, url: str, path: str, role: str, login: bool, rng: random.Random) -> None:
        self.url, self.path, self.role, self.login, self.rng = url, path, role, login, rng
        self.errors: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.closed_by_broker = 0

    async def _open(self, http: Any) -> Any:
        from eth_account import Account

        ws = await http.ws_connect(self.url + self.path, max_msg_size=64 * 1024 * 1024)
        challenge = orjson.loads((await ws.receive()).data)
        if self.login:
            acct = Account.create()
            sig = sign_challenge(acct.key, challenge["nonce"], self.role)
            msg: dict[str, Any] = {"type": "hello" if self.role == "client" else "register",
                                   "address": acct.address, "signature": sig, "nonce": challenge["nonce"]}
            if self.role == "worker":
                msg.update(capabilities=[{"intent": "fuzzintent"}], slots=2)
            await ws.send_str(orjson.dumps(msg).decode())
            await ws.receive()  # welcome
        return ws

    async def run(self, frames: int) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            ws = await self._open(http)
            reader = asyncio.create_task(self._read(ws))
            n = 0
            while n < frames:
                # Floods come in bursts of 50-300 pings; rare enough to be ~1/5 of the frames.
                # Deep and oversized frames are big: 1 in 100 and 1 in 500.
                roll = self.rng.random()
                if roll < 0.0015:
                    kind = "flood"
                elif roll < 0.0035:
                    kind = "oversized"
                elif roll < 0.0135:
                    kind = "deep"
                else:
                    kind = self.rng.choice(KINDS[:7])
                if ws.closed:
                    self.closed_by_broker += 1
                    await asyncio.gather(reader, return_exceptions=True)
                    ws = await self._open(http)
                    reader = asyncio.create_task(self._read(ws))
                burst = min(self.rng.randint(50, 300), frames - n) if kind == "flood" else 1
                try:
                    for _ in range(burst):
                        frame = (orjson.dumps({"type": "ping", "nonce": "f"}).decode() if kind == "flood"
                                 else make_frame(kind, self.rng, self.role == "worker"))
                        if isinstance(frame, bytes):
                            await ws.send_bytes(frame)
                        else:
                            await ws.send_str(frame)
                        self.sent[kind] += 1
                        n += 1
                        if isinstance(frame, str) and ('"hello"' in frame or '"register"' in frame):
                            # A refused login closes the socket: see the close before sending more
                            # into it, so frames are not lost on a dead connection.
                            await asyncio.sleep(0.02)
                except (ConnectionError, RuntimeError):
                    continue
                if n % 50 == 0:
                    await asyncio.sleep(0.01)  # let the reader keep up
            await asyncio.sleep(1.0)
            await ws.close()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, ws: Any) -> None:
        import aiohttp

        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = orjson.loads(msg.data)
            if data.get("type") == "error":
                self.errors[data["code"]] += 1


SLOW_KINDS = ("idle", "headers", "frame")


async def slow_loris(port: int, kind: str, give_up_s: float) -> float | None:
    """One slow socket: how long the broker let it live (None: still open after ``give_up_s``)."""
    import base64
    import os

    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    trickle = b""
    if kind == "headers":
        writer.write(b"GET /ws/client HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        trickle = b"X-Slow: " + b"a" * 10_000
    elif kind == "frame":
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (f"GET /ws/client HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        await reader.readuntil(b"\r\n\r\n")  # 101 Switching Protocols; the challenge frame follows
        # A masked text frame announcing 1000 bytes, whose payload then comes a byte at a time.
        writer.write(bytes([0x81, 0x80 | 126]) + (1000).to_bytes(2, "big") + os.urandom(4))
        trickle = b"x" * 1000

    async def until_closed() -> None:
        while await reader.read(65536):
            pass

    closed = asyncio.create_task(until_closed())
    try:
        for byte in trickle or iter(int, 1):  # idle: nothing to send, just wait
            if closed.done() or time.monotonic() - t0 > give_up_s:
                break
            if trickle:
                writer.write(bytes([byte]))
            await asyncio.wait({closed}, timeout=0.5)
        await asyncio.wait({closed}, timeout=max(0.0, give_up_s - (time.monotonic() - t0)))
    except (ConnectionError, OSError):
        pass
    lived = time.monotonic() - t0
    writer.transport.abort()
    if not closed.done():
        closed.cancel()
        return None
    return lived


async def normal_client(url: str, stop: asyncio.Event | None, count: int) -> tuple[list[float], int]:
    from mtor_cli.client import RealmClient, RealmError

    latencies: list[float] = []
    failures = 0
    async with RealmClient(url) as client:
        i = 0
        while (stop is None and i < count) or (stop is not None and not stop.is_set()):
            t0 = time.perf_counter()
            try:
                await client.ask(f"normal question {i}", intent="echo", timeout=30)
                latencies.append(time.perf_counter() - t0)
            except RealmError:
                failures += 1
            i += 1
    return latencies, failures


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))] * 1000


async def main_async(frames: int, seed: int, root: Path) -> int:
    port = free_port()
    url = url_for(port)
    broker = spawn_broker(port, root / "broker.db", root / "broker")
    worker = None
    try:
        wait_healthy(url)
        worker = spawn_worker(url, root / "worker", "echo")
        wait_workers(url, 1, "echo")
        quiet, _ = await normal_client(url, None, 200)

        rng = random.Random(seed)
        fuzzers = [
            Fuzzer(url, "/ws/client", "client", True, random.Random(rng.random())),
            Fuzzer(url, "/ws/client", "client", False, random.Random(rng.random())),
            Fuzzer(url, "/ws/worker", "worker", True, random.Random(rng.random())),
            Fuzzer(url, "/ws/worker", "worker", False, random.Random(rng.random())),
        ]
        share = frames // len(fuzzers)
        stop = asyncio.Event()
        normal = asyncio.create_task(normal_client(url, stop, 0))
        give_up_s = 3 * LOGIN_TIMEOUT_S
        loris = {kind: [asyncio.create_task(slow_loris(port, kind, give_up_s)) for _ in range(5)] for kind in SLOW_KINDS}
        t0 = time.perf_counter()
        await asyncio.gather(*(f.run(share) for f in fuzzers))
        took = time.perf_counter() - t0
        lived = {kind: await asyncio.gather(*tasks) for kind, tasks in loris.items()}
        stop.set()
        busy, failures = await normal

        alive = broker.poll() is None and get_json(url, "/healthz") is not None
        crashes = 0 if alive else 1
        sent: Counter[str] = sum((f.sent for f in fuzzers), Counter())
        errors: Counter[str] = sum((f.errors for f in fuzzers), Counter())
        print(f"fuzz: {sum(sent.values())} frames in {took:.1f} s against /ws/client and /ws/worker (seed {seed})")
        print("  sent by kind: " + ", ".join(f"{k} {sent[k]}" for k in KINDS))
        print(f"  answered with an error code: {sum(errors.values())} ("
              + ", ".join(f"{c} {n}" for c, n in errors.most_common()) + ")")
        print(f"  fuzz connections closed by the broker: {sum(f.closed_by_broker for f in fuzzers)}")
        print(f"  broker crashes: {crashes} (process alive and /healthz answering: {alive})")
        never_closed = 0
        for kind, times in lived.items():
            open_ = sum(t is None for t in times)
            never_closed += open_
            closed = sorted(t for t in times if t is not None)
            print(f"  slow-loris {kind:8}: {len(closed)}/{len(times)} closed by the broker"
                  + (f" after {closed[0]:.1f}-{closed[-1]:.1f} s" if closed else "")
                  + (f"; {open_} still open after {give_up_s:g} s" if open_ else ""))
        print(f"  normal client: quiet p50 {pct(quiet, 0.5):.2f} ms, p99 {pct(quiet, 0.99):.2f} ms ({len(quiet)} asks)")
        print(f"  normal client: under fuzz p50 {pct(busy, 0.5):.2f} ms, p99 {pct(busy, 0.99):.2f} ms "
              f"({len(busy)} asks, {failures} failed); p99 ratio {pct(busy, 0.99) / pct(quiet, 0.99):.2f}x")
        return 0 if crashes == 0 and failures == 0 and never_closed == 0 else 1
    finally:
        if worker is not None:
            stop_process(worker)
        stop_process(broker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mtor-fuzz-") as tmp:
        import os

        os.environ["MTOR_HOME"] = str(Path(tmp) / "client")
        raise SystemExit(asyncio.run(main_async(args.frames, args.seed, Path(tmp))))


if __name__ == "__main__":
    main()

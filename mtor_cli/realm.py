"""The embedded default realm: a local broker and workers as a background service.

``mtor ask`` with no broker configured calls :func:`ensure_realm`, which reuses
a running service (its pid, url and log are in ``<data>/realm/realm.json``,
checked with ``/healthz``) or starts one:

1. the default chat model is prepared in the FOREGROUND (converted once, with a
   progress bar, so the person sees what the first run is doing);
2. ``python -m mtor_cli realm run`` is spawned detached (its own session, output
   to ``<data>/realm/realm.log``): one process, one event loop, running
   the broker (journal ``<data>/realm/journal.db``), the chat worker, and a
   worker for every other intent this machine can serve
   (:mod:`mtor_cli.realm_workers`; models load on first use);
3. we wait until the worker has registered (``/v1/workers``), or fail with a
   clear error that points at the log.

``MTOR_DEFAULT_CHAT_MODEL`` (a model path or hub id) replaces the SmolLM2
default, e.g. a tiny model in tests. A file lock serialises concurrent starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtor_cli import paths
from mtor_cli.client import RealmError, http_get_json

ENV_MODEL = "MTOR_DEFAULT_CHAT_MODEL"
DEFAULT_WAIT_S = 300.0
SERVICE_INTENT = "chat"


def state_file() -> Path:
    return paths.realm_dir() / "realm.json"


def log_file() -> Path:
    return paths.realm_dir() / "realm.log"


def journal_file() -> Path:
    return paths.realm_dir() / "journal.db"


# --- state -----------------------------------------------------------------


def read_state() -> dict[str, Any] | None:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negatives address process groups, never one service
        return False
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _is_service(pid: int) -> bool:
    """True if ``pid`` is alive and is an embedded realm service (not a reused pid)."""
    if not _pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc to check against: trust the state file
    return b"mtor_cli" in argv and b"realm" in argv and b"run" in argv


def _healthy(url: str) -> bool:
    try:
        http_get_json(url, "/healthz", timeout=2.0)
    except RealmError:
        return False
    return True


def running_url() -> str | None:
    """The embedded realm's URL if its service is up and answering, else None."""
    state = read_state()
    if not state or not _is_service(int(state.get("pid", 0))):
        return None
    url = str(state["url"])
    return url if _healthy(url) else None


def _workers(url: str) -> list[dict[str, Any]]:
    data = http_get_json(url, "/v1/workers", timeout=2.0)
    rows = data.get("workers", []) if isinstance(data, dict) else data
    return [row for row in rows if isinstance(row, dict)]


def _serves(worker: dict[str, Any], intent: str) -> bool:
    intents = worker.get("intents")
    if intents is None:
        intents = [c.get("intent") for c in worker.get("capabilities", []) if isinstance(c, dict)]
    return intent in intents


def served_now() -> set[str] | None:
    """The intents the running embedded realm's workers serve; None when it is not running."""
    url = running_url()
    if url is None:
        return None
    try:
        return {str(c.get("intent")) for w in _workers(url) for c in w.get("capabilities", []) if isinstance(c, dict)}
    except RealmError:
        return None


def status() -> dict[str, Any]:
    """What ``mtor realm status --json`` prints."""
    state = read_state() or {}
    url = running_url()
    info: dict[str, Any] = {
        "running": url is not None,
        "url": state.get("url") if url else None,
        "pid": state.get("pid") if url else None,
        "port": state.get("port") if url else None,
        "model": state.get("model"),
        "started_at": state.get("started_at") if url else None,
        "log": str(log_file()),
        "journal": str(journal_file()),
        "workers": [],
    }
    if url:
        try:
            info["workers"] = _workers(url)
        except RealmError:
            pass
    return info


@contextmanager
def _locked() -> Iterator[None]:
    import fcntl

    with open(paths.realm_dir() / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- start / stop ------------------------------------------------------------


def ensure_realm(wait_s: float = DEFAULT_WAIT_S) -> str:
    """The URL of the embedded realm, starting it (and saying so on stderr) if needed.

    Raises SystemExit through :func:`mtor_cli.output.fail` when it cannot start.
    """
    from mtor_cli import output

    try:
        # Under the lock even when it runs: a realm another process is still
        # starting answers /healthz before its worker has registered.
        with _locked():
            url = running_url()
            if url:
                return url
            return _start(model=None, port=0, gpu=None, wait_s=wait_s)["url"]
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)


def resolve_model(model: str | None = None) -> str:
    """The chat model the embedded worker serves; converts SmolLM2 on first use
    in the foreground with a progress bar on stderr."""
    chosen = model or os.environ.get(ENV_MODEL)
    if chosen:
        return chosen
    # One progress bar (ours), not transformers' own per-file bars as well.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mtor_cli.output import err_console
    from worker.models import ModelUnavailable, default_chat_model

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("preparing the default chat model (SmolLM2-135M-Instruct)", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        try:
            return str(default_chat_model(progress=progress))
        except ModelUnavailable as exc:
            raise RealmError("realm_failed", exc.message, exc.hint) from exc


def port_file() -> Path:
    """The port the embedded realm last listened on (kept when it stops)."""
    return paths.realm_dir() / "port"


def _bindable(port: int, host: str = "127.0.0.1") -> int:
    """``port`` if it can be listened on now (0: any free port), else 0."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker binds it
        try:
            sock.bind((host, port))
        except OSError:
            return 0
        return int(sock.getsockname()[1])


def _choose_port(requested: int) -> int:
    """``requested``, else the port of the last run (workers and dashboards pointed
    at it find the realm again), else a free one."""
    if requested:
        return requested
    try:
        last = int(port_file().read_text())
    except (OSError, ValueError):
        last = 0
    port = _bindable(last) if last else 0
    if last and not port:
        from mtor_cli.output import note

        note(f"port {last} of the last run is taken; the embedded realm moves to another")
    return port or _bindable(0)


def start(
    *, model: str | None = None, port: int = 0, gpu: int | None = None, wait_s: float = DEFAULT_WAIT_S
) -> dict[str, Any]:
    """Start the service (if not running) and wait for its chat worker; returns status().

    Raises RealmError('realm_failed') when it cannot start.
    """
    with _locked():
        return _start(model=model, port=port, gpu=gpu, wait_s=wait_s)


def _start(*, model: str | None, port: int, gpu: int | None, wait_s: float) -> dict[str, Any]:
    from mtor_cli.output import note

    if running_url():
        return status()
    stale = read_state()
    if stale and _is_service(int(stale.get("pid", 0))):
        _terminate(int(stale["pid"]), 5.0)  # alive but not answering: replace it
    model_path = resolve_model(model)
    port = _choose_port(port)
    port_file().write_text(str(port))
    url = f"ws://127.0.0.1:{port}"
    log = log_file()
    note(f"starting the embedded realm at {url} (log: {log}) ...")
    cmd = [
        sys.executable, "-P", "-m", "mtor_cli", "realm", "run",  # -P: the cwd never shadows a package
        "--port", str(port), "--model", model_path, "--db", str(journal_file()),
    ]  # fmt: skip
    if gpu is not None:
        cmd += ["--gpu", str(gpu)]
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    state = {
        "pid": proc.pid,
        "url": url,
        "port": port,
        "model": model_path,
        "log": str(log),
        "started_at": time.time(),
    }
    tmp = state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(state_file())
    try:
        _wait_ready(proc, url, wait_s)
    except RealmError:
        _terminate(proc.pid, 5.0)
        state_file().unlink(missing_ok=True)
        raise
    note("the embedded realm is ready; later asks reuse it (`mtor realm stop` stops it)")
    return status()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, wait_s: float) -> None:
    note_after = time.monotonic() + 3.0
    deadline = time.monotonic() + wait_s
    said = False
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            reason = _failure_in_log()
            raise RealmError(
                "realm_failed",
                f"the embedded realm exited with status {code} while starting"
                + (f": {reason}" if reason else ""),
                f"see {log_file()}",
            )
        try:
            if any(_serves(w, SERVICE_INTENT) for w in _workers(url)):
                return
        except RealmError:
            pass  # not listening yet
        if not said and time.monotonic() > note_after:
            from mtor_cli.output import note

            note("waiting for the local chat worker to load its model ...")
            said = True
        time.sleep(0.2)
    raise RealmError(
        "realm_failed",
        f"the embedded realm's chat worker did not register within {wait_s:g}s",
        f"see {log_file()}; stop it with `mtor realm stop`",
    )


def _failure_in_log() -> str:
    """The last line of the latest run's log that names a failure, if any."""
    try:
        run = log_file().read_text(errors="replace").rsplit("\n--- ", 1)[-1]
    except OSError:
        return ""
    lines = [line.strip() for line in run.splitlines()]
    return next((line for line in reversed(lines) if "failed" in line or "Error" in line), "")[:300]


def _terminate(pid: int, grace_s: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _pid_alive(pid):
        time.sleep(0.05)


def stop(grace_s: float = 10.0) -> bool:
    """Stop the service; True if one was running."""
    with _locked():
        state = read_state()
        state_file().unlink(missing_ok=True)
        if not state or not _is_service(int(state.get("pid", 0))):
            return False
        _terminate(int(state["pid"]), grace_s)
        return True


# --- the service itself (`mtor realm run`) ------------------------------------


def run_service(*, host: str, port: int, db: Path, model: str, gpu: int | None) -> None:
    """Run broker + chat worker in this process until SIGINT/SIGTERM."""
    import asyncio

    from mtor_cli.output import log_to_stderr

    log_to_stderr()
    asyncio.run(_service(host, port, db, model, gpu))


async def _service(host: str, port: int, db: Path, model: str, gpu: int | None) -> None:
    import asyncio

    from broker import BrokerConfig, BrokerServer
    from mtor_cli.identity import load_or_create_account
    from worker import Worker, WorkerConfig
    from worker.backends.base import Device
    from worker.backends.registry import backend_class

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    # The worker has its own key: it is a different party from the person asking.
    # Loaded first: the ledger and the broker use eth_account from threads, and
    # two threads must not be the first to import it at once.
    account = load_or_create_account(paths.realm_dir() / "worker-key.json")
    from mtor_cli.commands.ledger import start_realm_ledger  # pay per query on the dev chain

    # The person who runs the embedded realm is its operator (sysop by right).
    config = BrokerConfig(host=host, port=port, db_path=db, operator=load_or_create_account().address)
    billing, make_desk = start_realm_ledger(stop)
    from mtor_cli.intent import installed_recogniser

    server = BrokerServer(config, billing, make_desk, installed_recogniser())
    await server.start()
    print(f"broker listening on {server.url} (journal {db})", flush=True)
    from mtor_cli import realm_workers  # speech, tts, embed, weather, email, vision, imagine

    # Registered before the chat worker, so that the starter's wait for chat covers them too.
    others = await realm_workers.start(server.url, account, load_or_create_account(), gpu)
    backend = backend_class(SERVICE_INTENT)(model, Device.parse(gpu))
    worker = Worker(WorkerConfig(broker_url=server.url, name="embedded"), [backend], account)
    task = asyncio.create_task(worker.run())
    print(f"chat worker serving {model}", flush=True)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    failure = task.exception() if task.done() and not task.cancelled() else None
    if failure is not None:
        print(f"the chat worker failed: {type(failure).__name__}: {failure}", flush=True)
    print("stopping", flush=True)
    stop.set()  # ends the ledger's upkeep too
    stopper.cancel()
    await worker.stop()
    await realm_workers.stop(others)
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await server.stop()
    if failure is not None:
        raise SystemExit(1)

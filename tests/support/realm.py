"""Realms for tests: a broker and workers, in a background thread or as processes.

In a thread (fast; one per test module is the usual pattern)::

    with ThreadRealm(tmp_path / "journal.db") as realm:
        realm.add_worker([EchoBackend(None, Device())])        # or ChatBackend(tiny, Device())
        realm.wait_workers(1)
        ... RealmClient(realm.url) / `mtor ask --broker realm.url` ...

As processes (for the fault tests: SIGKILL a worker, restart the broker)::

    port = free_port()
    broker = spawn_broker(port, db, home=tmp_path / "b")
    wait_healthy(url_for(port))
    worker = spawn_worker(url_for(port), home=tmp_path / "w1", intent="echo")
    wait_workers(url_for(port), 1)

Each process gets its own ``MTOR_HOME`` (hence its own key) and a log file
beside it; :func:`stop_process` always reaps it. Everything binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def url_for(port: int) -> str:
    return f"ws://127.0.0.1:{port}"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def get_json(url: str, path: str) -> Any:
    """GET a broker endpoint; None when it does not answer."""
    from mtor_cli.client import RealmError, http_get_json

    try:
        return http_get_json(url, path, timeout=2.0)
    except RealmError:
        return None


def workers(url: str, intent: str | None = None) -> list[dict[str, Any]]:
    data = get_json(url, "/v1/workers") or {"workers": []}
    rows = data["workers"]
    if intent is None:
        return rows
    return [w for w in rows if any(c["intent"] == intent for c in w["capabilities"])]


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    wait_until(lambda: get_json(url, "/healthz"), timeout, f"the broker at {url} to answer /healthz")


def wait_workers(url: str, count: int, intent: str | None = None, timeout: float = 60.0) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        rows = workers(url, intent)
        return rows if len(rows) >= count else None

    return wait_until(
        enough,
        timeout,
        f"{count} worker(s){' for ' + intent if intent else ''} at {url}",
    )


# --- in a thread ---------------------------------------------------------------


class ThreadRealm:
    """A BrokerServer, and Workers added later, on one event loop in a daemon thread."""

    def __init__(
        self, db_path: Path, billing: Any = None, money: Any = None, recogniser: Any = None, **config: Any
    ) -> None:
        """``money`` makes the ledger's money desk, ``recogniser`` places queries no rule routes
        (BrokerServer's other arguments)."""
        from broker import BrokerConfig

        self.config = BrokerConfig(**{"host": "127.0.0.1", "port": 0, "db_path": Path(db_path), **config})
        self.billing = billing
        self.money = money
        self.recogniser = recogniser
        self.server: Any = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-realm", daemon=True)
        self._workers: list[tuple[Any, asyncio.Task[Any]]] = []

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the realm's loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def start(self) -> ThreadRealm:
        from broker import BrokerServer

        self._thread.start()
        self.server = BrokerServer(self.config, self.billing, self.money, self.recogniser)
        self.call(self.server.start())
        return self

    def add_worker(
        self,
        backends: Iterable[Any],
        *,
        slots: int = 1,
        name: str = "",
        key_path: Path | None = None,
        **config: Any,
    ) -> Any:
        """Start a Worker serving ``backends`` (Backend instances; they load in the
        worker). Returns the Worker; use :meth:`wait_workers` to see it registered."""
        from eth_account import Account

        from mtor_cli.identity import load_or_create_account
        from worker import Worker, WorkerConfig

        account = load_or_create_account(key_path) if key_path else Account.create()
        worker = Worker(
            WorkerConfig(broker_url=self.url, slots=slots, name=name, **config), list(backends), account
        )

        async def launch() -> asyncio.Task[Any]:
            return asyncio.create_task(worker.run())

        task = self.call(launch())
        self._workers.append((worker, task))
        return worker

    def stop_worker(self, worker: Any) -> None:
        for entry in list(self._workers):
            if entry[0] is worker:
                self._workers.remove(entry)
                self.call(self._stop_one(*entry))

    @staticmethod
    async def _stop_one(worker: Any, task: asyncio.Task[Any]) -> None:
        await worker.stop()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def wait_workers(self, count: int, intent: str | None = None, timeout: float = 60.0) -> list[dict[str, Any]]:
        return wait_workers(self.url, count, intent, timeout)

    def restart(self) -> None:
        """Stop the broker and start a new one on the same port and journal
        (workers and clients reconnect by themselves)."""
        from broker import BrokerServer

        port = self.server.port
        self.call(self.server.stop())
        self.config.port = port
        self.server = BrokerServer(self.config, self.billing, self.money, self.recogniser)
        self.call(self.server.start())

    def stop(self) -> None:
        for worker, task in self._workers:
            self.call(self._stop_one(worker, task))
        self._workers.clear()
        if self.server is not None:
            self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> ThreadRealm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- as processes --------------------------------------------------------------


def mtor_command(*args: str) -> list[str]:
    """``mtor ARGS`` run by this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "mtor_cli", *args]


def process_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MTOR_BROKER", None)
    env["MTOR_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    # Two cores shared by every process of a test: one torch thread each.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def spawn(args: list[str], home: Path, log_name: str, **env: str) -> subprocess.Popen[bytes]:
    """Start ``mtor ARGS`` with its own MTOR_HOME, output to ``home/log_name``."""
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / log_name, "ab")
    try:
        return subprocess.Popen(
            mtor_command(*args),
            env=process_env(home, **env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    finally:
        log.close()


def spawn_broker(port: int, db: Path | str, home: Path, *extra: str) -> subprocess.Popen[bytes]:
    return spawn(
        ["broker", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db), *extra],
        home,
        "broker.log",
    )


def spawn_worker(
    url: str, home: Path, intent: str = "echo", model: str | None = None, *extra: str
) -> subprocess.Popen[bytes]:
    args = ["worker", "serve", "--broker", url, "--intent", intent]
    if model is not None:
        args += ["--model", model]
    return spawn([*args, *extra], home, "worker.log")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    """Signal ``proc`` and reap it (SIGKILL after ``timeout``); returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


def log_of(home: Path, name: str) -> str:
    try:
        return (home / name).read_text(errors="replace")
    except OSError:
        return ""

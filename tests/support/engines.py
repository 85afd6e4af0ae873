"""Throwaway Redis and PostgreSQL servers for tests: free ports, temp dirs, stopped by PID.

Both come from Debian's packages (`scripts/install.sh --all` installs them);
nothing has to run before the tests start them::

    with RedisServer(appendonly=True) as redis, PostgresServer() as pg:
        url = pg.create_database()            # postgresql://mtor@127.0.0.1:PORT/t_...
        ... BrokerConfig(engine=redis.url, db=url) ...
        redis.restart()                       # SIGTERM, then the same port and dir again
        pg.stop(); pg.start()                 # "Postgres briefly down"

PostgreSQL refuses to run as root, so under root its processes run as
``nobody`` (setpriv, util-linux) in a data dir that user owns; otherwise as
the current user. Servers bind 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

NOBODY = (65534, 65534)  # nobody:nogroup on Debian


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def _reap(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class RedisServer:
    """``redis-server`` on a free port with its files in a temp dir."""

    def __init__(self, appendonly: bool = True, appendfsync: str = "everysec") -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mtor-redis-"))
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> RedisServer:
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync, "--daemonize", "no", "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        _wait(self._answers, 15, f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {self.log()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM writes the append-only file and exits; SIGKILL does neither."""
        _reap(self.proc, sig)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "redis.log").read_text(errors="replace")
        return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin dir (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed: run `bash scripts/install.sh --all`")
    return Path(initdb).parent


class PostgresServer:
    """A PostgreSQL cluster in a temp dir, on a free port, superuser ``mtor`` (trust auth)."""

    USER = "mtor"

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mtor-pg-"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            os.chown(self.dir, *NOBODY)
            uid, gid = NOBODY
            self._as = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        self._initdb()

    def _initdb(self) -> None:
        subprocess.run(
            [*self._as, str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.USER,
             "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> PostgresServer:
        log = open(self.dir / "postgres.log", "ab")
        try:
            self.proc = subprocess.Popen(
                [*self._as, str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
                 "-c", "shared_buffers=32MB", "-c", "fsync=off", "-c", "full_page_writes=off"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        finally:
            log.close()
        _wait(self._answers, 30, f"postgres on port {self.port}")
        return self

    def _answers(self) -> bool:
        import psycopg

        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"postgres exited: {self.log()[-2000:]}")
        try:
            with psycopg.connect(self.url(), connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT: PostgreSQL's fast shutdown (sessions end, everything committed is kept)."""
        _reap(self.proc, sig, timeout=30)
        self.proc = None

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "postgres.log").read_text(errors="replace")
        return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

"""`mtor broker serve --paid`: a standalone broker that charges through the ledger."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from tests.support.realm import (
    free_port,
    mtor_command,
    process_env,
    spawn_broker,
    spawn_worker,
    stop_process,
    url_for,
    wait_healthy,
    wait_workers,
)


def test_a_paid_broker_charges_the_user_and_the_books_agree(tmp_path: Path) -> None:
    home = tmp_path / "operator"  # the broker's ledger and the asking user share this home
    port = free_port()
    url = url_for(port)
    broker = spawn_broker(port, tmp_path / "journal.db", home, "--paid")
    worker = None
    try:
        wait_healthy(url, timeout=90)
        worker = spawn_worker(url, tmp_path / "worker", "echo")
        wait_workers(url, 1, "echo")

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                mtor_command(*args), env=process_env(home), capture_output=True, text=True, timeout=120
            )

        asked = run("ask", "-b", url, "-i", "echo", "--json", "pay for this")
        assert asked.returncode == 0, asked.stderr
        answer = json.loads(asked.stdout)
        cost = int(answer["cost"])
        assert answer["text"] == "pay for this" and cost > 0

        wallet = json.loads(run("wallet", "-b", url, "--json").stdout)
        assert int(wallet["available"]) == 100 * 10**18 - cost  # the dev welcome grant, less the query
        audit = run("ledger", "audit")
        assert audit.returncode == 0 and "audit clean" in audit.stdout
    finally:
        if worker is not None:
            stop_process(worker, signal.SIGKILL)
        stop_process(broker)
    assert "paid broker listening" in (home / "broker.log").read_text()


def _mtor(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mtor_command(*args), env=process_env(home), capture_output=True, text=True, timeout=120)


def test_migrate_creates_the_schema_once_and_serve_refuses_a_database_without_it(
    tmp_path: Path, postgres_server
) -> None:
    url = postgres_server.create_database()
    port = free_port()
    refused = subprocess.run(
        mtor_command("broker", "serve", "--port", str(port), "--db", url),
        env=process_env(tmp_path / "b0"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "[schema_outdated]" in refused.stderr and "mtor broker migrate --db" in refused.stderr

    first = _mtor(tmp_path, "broker", "migrate", "--db", url, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["from"] == 0 and report["to"] >= 2 and report["applied"][0] == "001_intents"
    again = _mtor(tmp_path, "broker", "migrate", "--db", url)
    assert again.returncode == 0 and "up to date" in again.stdout

    broker = spawn_broker(port, url, tmp_path / "b1")
    worker = None
    try:
        wait_healthy(url_for(port), timeout=60)
        worker = spawn_worker(url_for(port), tmp_path / "worker", "echo")
        wait_workers(url_for(port), 1, "echo")
        asked = _mtor(tmp_path / "user", "ask", "-b", url_for(port), "-i", "echo", "--json", "kept in postgres")
        assert asked.returncode == 0, asked.stderr
        guid = json.loads(asked.stdout)["guid"]
        import psycopg

        with psycopg.connect(url) as db:
            assert db.execute("SELECT state FROM intents WHERE guid = %s", (guid,)).fetchone() == ("done",)
    finally:
        if worker is not None:
            stop_process(worker, signal.SIGKILL)
        stop_process(broker)
    assert "journal postgresql://mtor@127.0.0.1" in (tmp_path / "b1" / "broker.log").read_text()


def test_engine_needs_a_shared_database(tmp_path: Path) -> None:
    done = _mtor(tmp_path, "broker", "serve", "--engine", "redis://127.0.0.1:1/0")
    assert done.returncode == 2 and "--engine needs a database every broker shares" in done.stderr

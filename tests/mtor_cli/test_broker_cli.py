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

"""`mtor federation key|peer|status|certify` end to end, against real brokers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import to_checksum_address
from typer.testing import CliRunner

from mtor_cli.app import app
from tests.support.federation import Grid
from tests.support.peers import FakeWorker, hang
from worker.backends.base import Device
from worker.backends.echo import EchoBackend


def mtor(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def _json(*args: str) -> Any:
    result = mtor(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_key_and_peers_of_a_realm(tmp_path: Path) -> None:
    db = str(tmp_path / "broker.db")
    first = _json("federation", "key", "--db", db)
    assert first["address"].startswith("0x") and _json("federation", "key", "--db", db) == first
    assert stat.S_IMODE(os.stat(first["key_file"]).st_mode) == 0o600

    other = "0x" + "ab" * 20
    refused = mtor("federation", "peer", "add", "wss://other:8765", "--name", "other", "--db", db)
    assert refused.exit_code == 2 and "--key" in refused.stderr and "--tofu" in refused.stderr
    bad = mtor("federation", "peer", "add", "wss://other:8765", "--name", "other", "--key", "0x12", "--db", db)
    assert bad.exit_code == 2 and "not an address" in bad.stderr
    added = _json("federation", "peer", "add", "https://other:8765/", "--name", "other", "--key", other,
                  "--max-credit", "2.5", "--max-queued", "7", "--db", db)
    assert added["url"] == "wss://other:8765" and added["address"] == to_checksum_address(other)
    assert (added["max_credit"], added["max_credit_9000"], added["max_queued"]) == (str(25 * 10**17), "2.5", 7)
    assert added["realm_key"] == first["address"]
    again = mtor("federation", "peer", "add", "ws://else:1", "--name", "other2", "--key", other, "--db", db)
    assert again.exit_code == 1 and "[bad_params]" in again.stderr
    assert [p["name"] for p in _json("federation", "peer", "list", "--db", db)["peers"]] == ["other"]
    assert "other" in mtor("federation", "peer", "list", "--db", db).stdout
    assert _json("federation", "peer", "remove", "other", "--db", db)["removed"]["name"] == "other"
    assert _json("federation", "peer", "list", "--db", db)["peers"] == []
    missing = mtor("federation", "peer", "remove", "other", "--db", db)
    assert missing.exit_code == 1 and "[not_found]" in missing.stderr


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    grid = Grid(tmp_path_factory.mktemp("cli-grid"), "abs").start()  # s: a realm whose worker is stalled
    stalled = FakeWorker(grid.url("s"), intents=("echo",), behaviour=hang(), slots=4)
    try:
        grid.realms["b"].add_worker([EchoBackend("remote", Device())])
        grid.realms["s"].call(stalled.start())
        for name in "bs":
            grid.realms[name].wait_workers(1)
        grid.pin_both("a", "b")
        grid.wait_linked("a", "b", "echo")
        yield grid
    finally:
        grid.realms["s"].call(stalled.close())
        grid.stop()


def test_tofu_pins_the_key_a_realm_publishes(grid: Grid, tmp_path: Path) -> None:
    db = str(tmp_path / "broker.db")
    added = _json("federation", "peer", "add", grid.url("b"), "--name", "b", "--tofu", "--db", db)
    assert added["address"] == grid.keys["b"]
    never = mtor("federation", "peer", "add", grid.url("s"), "--name", "s", "--tofu", "--db", db)
    assert never.exit_code == 1 and "[not_peer]" in never.stderr  # s has never federated: no key to take


def test_status_shows_every_peer(grid: Grid) -> None:
    data = _json("federation", "status", "--broker", grid.url("a"))
    assert data["realm"]["address"] == grid.keys["a"]
    (peer,) = data["peers"]
    assert peer["name"] == "b" and peer["link"]["state"] == "connected"
    assert int(peer["credit"]["owed_to_us"]["limit"]) == 100 * 10**18  # REST: big amounts are strings
    table = mtor("federation", "status", "--broker", grid.url("a"))
    assert table.exit_code == 0 and "connected" in table.stdout and grid.keys["a"] in table.stdout


def test_certify_passes_a_healthy_realm(grid: Grid) -> None:
    result = mtor("federation", "certify", grid.url("b"), "--intent", "echo", "--budget", "20", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    assert [(t["name"], t["passed"]) for t in report["tests"]] == [
        ("health", True), ("fairness", True), ("throughput", True), ("failover", True)
    ]
    fairness = report["tests"][1]
    assert fairness["heavy_before_light"] <= fairness["allowed"] < fairness["heavy_waiting"]


def test_certify_fails_a_realm_whose_worker_is_stalled(grid: Grid) -> None:
    result = mtor("federation", "certify", grid.url("s"), "--intent", "echo", "--budget", "2")
    assert result.exit_code == 1
    assert "FAILED" in result.stdout and "did not finish within 2 s" in result.stdout
    report = json.loads(mtor("federation", "certify", grid.url("s"), "--intent", "echo", "--budget", "2",
                             "--json").stdout)
    assert not report["passed"] and [t["passed"] for t in report["tests"]] == [False] * 4

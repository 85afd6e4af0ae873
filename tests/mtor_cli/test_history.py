"""`mtor history` and `mtor history show` against a real broker and echo worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mtor_cli.app import app
from mtor_cli.identity import load_or_create_account
from tests.support.realm import ThreadRealm
from worker import Device
from worker.backends.echo import EchoBackend


def mtor(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})  # a wide terminal: no wrapped cells


def key_file(root: Path, name: str) -> tuple[str, str]:
    """(key path, address) of a fresh identity."""
    path = root / f"{name}.json"
    return str(path), load_or_create_account(path).address


def echo_realm(root: Path, **config: Any) -> ThreadRealm:
    realm = ThreadRealm(root / "journal.db", **config).start()
    realm.add_worker([EchoBackend(None, Device())], slots=2, name="echo-box")
    realm.wait_workers(1, "echo")
    return realm


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    realm = echo_realm(tmp_path_factory.mktemp("history-realm"))
    yield realm
    realm.stop()


def test_history_lists_your_intents_and_show_replays_one(realm: ThreadRealm, tmp_path: Path) -> None:
    key, address = key_file(tmp_path, "me")
    other_key, _ = key_file(tmp_path, "other")
    # `mtor ask` uses the key in MTOR_HOME: point it at ours.
    home_key = Path(tmp_path / "mtor-home" / "config" / "key.json")
    home_key.parent.mkdir(parents=True, exist_ok=True)
    home_key.write_text(Path(key).read_text())
    for words in ("first words", "second words"):
        done = mtor("ask", "--broker", realm.url, "--intent", "echo", words)
        assert done.exit_code == 0, done.output

    listed = mtor("history", "--broker", realm.url, "--key", key, "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert data["address"] == address
    rows = data["history"]
    assert [(r["prompt"], r["intent"], r["status"], r["model"]) for r in rows] == [
        ("second words", "echo", "done", "echo"),
        ("first words", "echo", "done", "echo"),
    ]
    assert all(r["worker"] and r["duration_s"] >= 0 for r in rows)
    assert len(json.loads(mtor("history", "-b", realm.url, "--key", key, "--limit", "1", "--json").stdout)["history"]) == 1

    table = mtor("history", "-b", realm.url, "--key", key)
    assert table.exit_code == 0 and rows[0]["guid"][:8] in table.stdout and "done" in table.stdout

    shown = mtor("history", "show", rows[1]["guid"], "-b", realm.url, "--key", key)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == "first words\n"

    theirs = mtor("history", "show", rows[1]["guid"], "-b", realm.url, "--key", other_key)
    assert theirs.exit_code == 1
    assert "[unknown_guid]" in theirs.stderr and "hint:" in theirs.stderr
    empty = mtor("history", "-b", realm.url, "--key", other_key)
    assert "no intents yet" in empty.stdout


def test_history_of_an_unreachable_broker_fails_with_one_line(tmp_path: Path) -> None:
    key, _ = key_file(tmp_path, "me")
    result = mtor("history", "--broker", "ws://127.0.0.1:9", "--key", key)
    assert result.exit_code == 3
    assert result.stderr.startswith("mtor: cannot reach the broker") and "[unreachable]" in result.stderr


def test_history_fits_80_columns_and_show_takes_the_short_guid(realm: ThreadRealm, tmp_path: Path) -> None:
    """What a person reads at 80 columns: short guid, local time, the prompt cut, the cost in $9000."""
    import datetime as dt

    key, _ = key_file(tmp_path, "narrow")
    home_key = Path(tmp_path / "mtor-home" / "config" / "key.json")
    home_key.parent.mkdir(parents=True, exist_ok=True)
    home_key.write_text(Path(key).read_text())
    long_prompt = "a rather long question about the history of the realm " * 3
    assert mtor("ask", "--broker", realm.url, "--intent", "echo", long_prompt).exit_code == 0
    row = json.loads(mtor("history", "-b", realm.url, "--key", key, "--json").stdout)["history"][0]
    assert row["cost"] == "0" and row["cost_9000"] == "0"  # base units as a string, beside the decimal

    table = CliRunner().invoke(app, ["history", "-b", realm.url, "--key", key], env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), table.stdout
    line = next(line for line in lines if row["guid"][:8] in line)
    assert dt.datetime.fromtimestamp(row["time"]).strftime("%H:%M:%S") in line  # local time, not UTC
    assert "a rather long question" in line and "…" in line and "done" in line
    assert row["guid"] not in table.stdout  # the short form only

    shown = mtor("history", "show", row["guid"][:8], "-b", realm.url, "--key", key)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == long_prompt.strip() + "\n"

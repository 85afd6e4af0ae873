"""`mtor config path|list|get|set|unset`: every key mtor reads is documented and takes effect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from mtor_cli.app import app
from mtor_cli.config_keys import KEYS


def mtor(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "100"})


def test_path_set_get_list_unset(mtor_home: Path) -> None:
    path = mtor("config", "path")
    assert path.exit_code == 0 and path.stdout.strip() == str(mtor_home / "config" / "config.toml")
    assert mtor("config", "get", "broker").exit_code == 1  # not set

    assert mtor("config", "set", "broker", "ws://realm.example:8765").exit_code == 0
    assert mtor("config", "get", "broker").stdout == "ws://realm.example:8765\n"
    listed = json.loads(mtor("config", "list", "--json").stdout)
    rows = {row["key"]: row for row in listed["settings"]}
    assert [row["key"] for row in listed["settings"]][: len(KEYS)] == [k.name for k in KEYS]
    assert rows["broker"]["value"] == "ws://realm.example:8765" and rows["broker"]["help"]
    assert all(rows[k.name]["help"] == k.help for k in KEYS)
    assert (mtor_home / "config" / "config.toml").stat().st_mode & 0o077 == 0  # yours only

    assert mtor("config", "unset", "broker").exit_code == 0
    assert mtor("config", "get", "broker").exit_code == 1


def test_a_bad_value_for_a_known_key_is_refused(mtor_home: Path) -> None:
    for key, value in (("broker", "ftp://realm"), ("ledger.confirmations", "two"), ("ledger.chain_rpc", "ws://x:1")):
        result = mtor("config", "set", key, value)
        assert result.exit_code == 2, (key, result.output)
        line = result.stderr.strip()
        assert "[usage]" in line and "e.g. mtor config set" in line and len(line.splitlines()) == 1
    assert not (mtor_home / "config" / "config.toml").exists()


def test_every_documented_key_takes_effect(mtor_home: Path) -> None:
    """Each key set to its documented example is what the code then reads."""
    for key in KEYS:
        assert mtor("config", "set", key.name, key.example).exit_code == 0, key.name
    from mtor_cli.commands.ledger import ledger_config, ledger_settings
    from mtor_cli.options import configured_broker

    assert configured_broker() == "ws://realm.example:8765"
    config = ledger_config()
    assert (config.chain_rpc, config.confirmations, config.epoch_seconds, config.epoch_queries) == (
        "http://127.0.0.1:8545", 2, 60.0, 1000,
    )  # fmt: skip
    assert (config.gas_cap, config.exit_window_s, config.hold_ttl_s, config.stale_epochs) == (12_000_000, 3600, 600.0, 5)
    assert str(config.pricing_file) == "/etc/mtor/pricing.toml"
    assert ledger_settings()["public_rpc"] == "https://rpc.example.org"
    # Anything else is kept, with a note that mtor does not read it.
    other = mtor("config", "set", "colour", "blue")
    assert other.exit_code == 0 and "does not read 'colour'" in other.stderr
    table = mtor("config", "list")
    assert "colour" in table.stdout and "not read by mtor" in table.stdout

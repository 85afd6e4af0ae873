"""Identity and paths: one key per MTOR_HOME, created once, private, reused."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mtor_cli import paths
from mtor_cli.identity import IdentityError, load_or_create_account
from tests.support.realm import process_env


def test_home_layout(mtor_home: Path) -> None:
    assert paths.config_dir() == mtor_home / "config"
    assert paths.data_dir() == mtor_home / "data"
    assert paths.key_file() == mtor_home / "config" / "key.json"
    assert paths.realm_dir().is_dir()


def test_key_created_once_private_and_reused(mtor_home: Path) -> None:
    first = load_or_create_account()
    key = mtor_home / "config" / "key.json"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    stored = json.loads(key.read_text())
    assert stored["address"] == first.address
    assert first.address.startswith("0x") and first.address != first.address.lower()
    again = load_or_create_account()
    assert again.address == first.address
    assert again.key == first.key


def test_concurrent_first_use_agrees_on_one_key(mtor_home: Path) -> None:
    code = "from mtor_cli.identity import address; print(address())"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=process_env(mtor_home), stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    addresses = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(addresses) == 1
    assert addresses == {load_or_create_account().address}


def test_corrupt_key_is_a_clear_error(mtor_home: Path) -> None:
    key = paths.key_file()
    key.write_text("not json")
    with pytest.raises(IdentityError, match="cannot read the key file"):
        load_or_create_account()


def test_broker_from_env_then_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.configured_broker() is None
    paths.config_file().write_text('broker = "ws://10.0.0.1:9000"\n')
    assert paths.configured_broker() == "ws://10.0.0.1:9000"
    monkeypatch.setenv("MTOR_BROKER", "ws://127.0.0.1:1")
    assert paths.configured_broker() == "ws://127.0.0.1:1"

"""Fixtures for the ledger tests: a realm data dir under MTOR_HOME, a ledger on the
embedded chain (deployed on first use), users with test tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger, LedgerConfig
from ledger.units import ONE


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MTOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MTOR_CHAIN_RPC", raising=False)
    return tmp_path / "home"


@pytest.fixture
def config(home: Path) -> LedgerConfig:
    return LedgerConfig(home / "data")


@pytest.fixture
def led(config: LedgerConfig) -> Iterator[Ledger]:
    with Ledger(config) as ledger:
        yield ledger


def new_account() -> Any:
    from eth_account import Account

    return Account.create()


@pytest.fixture
def payer(led: Ledger) -> Any:
    """A user with 1000 test tokens, 100 of them deposited."""
    account = new_account()
    led.faucet(account)
    led.deposit(account, 100 * ONE)
    return account

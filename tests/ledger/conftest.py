"""Fixtures for the ledger tests: a realm data dir under MTOR_HOME, a ledger on the
embedded chain (deployed on first use), users with test tokens, and paying for a
query as a client does it (a signed cumulative authorisation with each hold)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ledger import Ledger, LedgerConfig, RealmBilling
from ledger import authorisation as auth
from ledger.units import ONE


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MTOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MTOR_CHAIN_RPC", raising=False)
    return tmp_path / "home"


@pytest.fixture
def config(home: Path) -> LedgerConfig:
    return LedgerConfig(home / "data", welcome_grant=0)


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


def authorise(billing: RealmBilling, user: Any, extra: int, *, signer: Any = None) -> SimpleNamespace:
    """What the client SDK sends: everything committed so far plus ``extra``, signed by the user."""
    terms = billing._terms()
    assert terms is not None
    total = billing.journal.committed(user.address) + extra
    return SimpleNamespace(total=total, signature=auth.sign((signer or user).key, terms, user.address, total))


def hold(billing: RealmBilling, user: Any, guid: str, amount: int) -> None:
    billing.hold(user.address, guid, amount, authorise(billing, user, amount))


def pay(billing: RealmBilling, user: Any, worker: Any, guid: str, usage: dict[str, Any] | None = None) -> int:
    """One paid chat query: quote, hold with a fresh authorisation, capture."""
    price = billing.quote(user.address, "chat", None, {})
    hold(billing, user, guid, price)
    return billing.capture(guid, worker.address, "chat", usage if usage is not None else {"tokens": 1000})


@pytest.fixture(params=["sqlite", "postgresql"])
def at(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a journal lives, once per backend: a SQLite file, or a fresh migrated
    PostgreSQL database (the session's throwaway server): the journal's tests run
    against both."""
    if request.param == "sqlite":
        return str(tmp_path / "j.db")
    return str(request.getfixturevalue("pg_database"))


class Raw:
    """A plain connection to a journal's rows, beside the journal (tampering, looking)."""

    def __init__(self, at: str) -> None:
        self.postgres = at.startswith("postgresql://")
        if self.postgres:
            import psycopg

            self._conn: Any = psycopg.connect(at)
            self._conn.execute("SET search_path = ledger")
        else:
            import sqlite3

            self._conn = sqlite3.connect(at)

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        if self.postgres:
            sql = sql.replace("?", "%s")
        return self._conn.execute(sql, args)

    def commit(self) -> None:
        self._conn.commit()


def raw(at: str) -> Raw:
    return Raw(at)

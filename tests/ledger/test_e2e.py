"""End to end: faucet -> deposit -> a paid query through a real broker and worker ->
the worker earns -> settle -> withdraw -> the chain equals the journal, audit clean.

Runs on the embedded chain, and the same path on a real `hardhat node`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger import Ledger, LedgerConfig
from ledger import accounts as A
from ledger.units import ONE
from mtor_cli.app import app
from mtor_cli.client import RealmClient, RealmError
from tests.support.hardhat import HardhatNode
from tests.support.paid import PaidRealm
from tests.support.peers import FakeWorker, fail

ECHO_PRICE = ONE // 100  # the default rule: one query


def mtor(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    return result


@pytest.fixture
def paid(config: LedgerConfig, home: Path) -> Iterator[PaidRealm]:
    realm = PaidRealm(config, home)
    yield realm
    realm.close()


def me() -> Any:
    from mtor_cli.identity import load_or_create_account

    return load_or_create_account()


def journal_equals_chain(led: Ledger, *addresses: str) -> None:
    with led.session() as s:
        for who in addresses:
            dep, earned = s.ledger.functions.accountOf(who).call()
            held = led.journal.balance(A.user(who)) + led.journal.balance(A.hold(who))
            assert dep == held, who
            assert earned == led.journal.balance(A.worker(who)), who


def full_path(paid: PaidRealm, rpc: list[str]) -> None:
    """The user and the worker act through the realm (--broker); the operator's
    own books (settle, audit) are read from its ledger (``rpc``: its chain)."""
    b = ["--broker", paid.realm.url]
    assert mtor("wallet", "faucet", *b).exit_code == 0
    deposited = mtor("wallet", "deposit", "2.5", *b)
    assert deposited.exit_code == 0, deposited.output
    user = me()

    result = mtor("ask", *b, "--intent", "echo", "--json", "pay me back")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["text"] == "pay me back" and int(answer["cost"]) == ECHO_PRICE

    from mtor_cli.identity import load_or_create_account

    worker = load_or_create_account(paid.worker_key)
    key = ["--key", str(paid.worker_key)]
    earn = json.loads(mtor("worker", "earnings", *key, *b, "--json").stdout)
    assert int(earn["earned"]) == ECHO_PRICE * 9 // 10 and earn["withdrawable"] == "0"

    settled = mtor("ledger", "settle", *rpc, "--json")
    assert settled.exit_code == 0, settled.output
    assert json.loads(settled.stdout)["settled"][0]["debited"] == ECHO_PRICE

    out = mtor("worker", "withdraw", *key, *b, "--json")
    assert out.exit_code == 0, out.output
    assert int(json.loads(out.stdout)["amount"]) == ECHO_PRICE * 9 // 10

    wallet = json.loads(mtor("wallet", *b, "--json").stdout)
    assert int(wallet["available"]) == 5 * ONE // 2 - ECHO_PRICE
    assert wallet["chain"]["deposit"] == wallet["available"]
    wallet_w = json.loads(mtor("wallet", *key, *b, "--json").stdout)
    assert int(wallet_w["chain"]["tokens"]) == ECHO_PRICE * 9 // 10
    journal_equals_chain(paid.ledger, user.address, worker.address)

    audit = mtor("ledger", "audit", *rpc, "--receipt", answer["guid"], "--json")
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.stdout)["proof"]["valid"]


def test_faucet_deposit_paid_query_settle_withdraw_audit(paid: PaidRealm) -> None:
    full_path(paid, [])


def test_the_same_path_on_a_hardhat_node(tmp_path: Path, home: Path, config: LedgerConfig) -> None:
    with HardhatNode(tmp_path) as node:
        rpc = ["--chain-rpc", node.url]
        deployed = mtor("chain", "deploy", *rpc, "--json")
        assert deployed.exit_code == 0, deployed.output
        assert json.loads(deployed.stdout)["chain_id"] == 31337
        realm = PaidRealm(replace(config, chain_rpc=node.url), home)
        try:
            full_path(realm, rpc)
        finally:
            realm.close()
        assert node.proc is not None and node.proc.poll() is None
    assert node.proc.poll() is not None  # the node was stopped by its pid


def test_without_funds_nothing_is_dispatched(paid: PaidRealm) -> None:
    paid.ledger.config.welcome_grant = 0  # a realm without welcome grants
    result = mtor("ask", "--broker", paid.realm.url, "--intent", "echo", "hello")
    assert result.exit_code == 6
    line = result.stderr.strip().splitlines()[-1]
    assert "[insufficient_funds]" in line and "balance 0" in line
    assert paid.ledger.journal.count("hold") == 0
    assert paid.ledger.journal.open_holds() == {}


def test_a_new_user_gets_the_welcome_grant_and_can_ask(paid: PaidRealm) -> None:
    result = mtor("ask", "--broker", paid.realm.url, "--intent", "echo", "--json", "first time")
    assert result.exit_code == 0, result.output
    assert int(json.loads(result.stdout)["cost"]) == ECHO_PRICE
    user = me().address
    assert paid.ledger.journal.balance(A.user(user)) == paid.config.welcome_grant - ECHO_PRICE
    assert paid.ledger.journal.get("welcome", user) is not None
    with paid.ledger.session() as s:
        assert s.ledger.functions.accountOf(user).call()[0] == paid.config.welcome_grant
    assert paid.ledger.audit().clean


def test_cancel_and_failure_release_the_hold(paid: PaidRealm) -> None:
    user = me()
    paid.ledger.faucet(user)
    paid.ledger.deposit(user, ONE)

    async def cancel_midway() -> None:
        async with RealmClient(paid.realm.url, user) as client:
            task = asyncio.create_task(
                client.ask("one two three four five six", intent="echo", params={"delay_s": 0.5}, guid="to-cancel")
            )
            while paid.ledger.journal.open_hold("to-cancel") is None:
                await asyncio.sleep(0.02)
            await client.cancel("to-cancel")
            with pytest.raises(RealmError) as info:
                await task
            assert info.value.code == "cancelled"

    asyncio.run(cancel_midway())
    assert paid.ledger.journal.get("release", "to-cancel") is not None

    paid.realm.stop_worker(paid.worker)
    broken = paid.realm.call(FakeWorker(paid.realm.url, intents=("echo",), behaviour=fail(retryable=False)).start())
    with pytest.raises(RealmError) as info:
        paid.ask(user, "this will fail")
    assert info.value.code == "worker_failed"
    paid.realm.call(broken.close())
    assert paid.ledger.journal.open_holds() == {}
    assert paid.ledger.journal.count("capture") == 0
    assert paid.ledger.journal.balance(A.user(user.address)) == ONE
    assert paid.ledger.audit().clean


def test_a_restarted_realm_keeps_chain_and_journal(config: LedgerConfig, home: Path) -> None:
    first = PaidRealm(config, home)
    user = me()
    first.ledger.faucet(user)
    first.ledger.deposit(user, ONE)
    first.ask(user, "before the restart")
    first.close()

    second = PaidRealm(config, home)
    try:
        assert second.ledger.journal.balance(A.user(user.address)) == ONE - ECHO_PRICE
        second.ask(user, "after the restart")
        assert second.ledger.journal.balance(A.user(user.address)) == ONE - 2 * ECHO_PRICE
        [epoch] = second.ledger.settle()
        assert epoch.receipts == 2
        with second.ledger.session() as s:
            assert s.token.functions.balanceOf(user.address).call() == 999 * ONE
        assert second.ledger.audit().clean
    finally:
        second.close()

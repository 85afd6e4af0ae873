"""End to end: faucet -> deposit -> a paid query through a real broker and worker, signed
by the client SDK -> the worker earns -> settle -> claim -> the chain equals the journal,
audit clean. The user and the worker act through the realm (--broker), as on someone
else's realm; the operator's own commands (settle, audit) read its ledger. Runs on the
embedded chain, and the same path on a real `hardhat node`; and the issue's whole
story: two workers, three users, settlement, claims, an exit without the operator.
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
from mtor_cli.identity import load_or_create_account
from tests.support.hardhat import HardhatNode
from tests.support.paid import PaidRealm
from tests.support.peers import FakeWorker, fail

ECHO_PRICE = ONE // 100  # the default rule: one query
EARNED = ECHO_PRICE * 9 // 10  # the worker's part of it (the realm's fee is 10 %)


def mtor(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def ok(*args: str) -> dict[str, Any]:
    result = mtor(*args, "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


@pytest.fixture
def paid(config: LedgerConfig, home: Path) -> Iterator[PaidRealm]:
    realm = PaidRealm(replace(config, welcome_grant=100 * ONE), home)
    yield realm
    realm.close()


def me() -> Any:
    return load_or_create_account()


def journal_equals_chain(led: Ledger, *addresses: str) -> None:
    with led.session() as s:
        for who in addresses:
            dep, spent = s.ledger.functions.accountOf(who).call()
            held = led.journal.balance(A.user(who)) + led.journal.balance(A.hold(who))
            assert dep == held and spent == led.journal.charged(who), who
            assert led.journal.balance(A.worker(who)) == 0, who  # everything earned was claimed


def full_path(paid: PaidRealm, rpc: list[str]) -> None:
    """``rpc``: the operator's chain (its own commands); the user and the worker need
    only the realm's URL (its relay carries their transactions), or a node of its chain."""
    b = ["--broker", paid.realm.url]
    assert mtor("wallet", "faucet", *b).exit_code == 0
    deposited = mtor("wallet", "deposit", "2.5", *b)
    assert deposited.exit_code == 0, deposited.output
    user = me()

    answer = ok("ask", *b, "--intent", "echo", "pay me back")
    assert answer["text"] == "pay me back" and int(answer["cost"]) == ECHO_PRICE

    worker = load_or_create_account(paid.worker_key)
    key = ["--key", str(paid.worker_key)]
    earn = ok("worker", "earnings", *key, *b)
    assert int(earn["unclaimed"]) == EARNED and earn["claimable"] == "0"
    assert int(earn["awaiting_settlement"]) == EARNED

    settled = ok("ledger", "settle", *rpc)
    assert settled["settled"][0]["earnings_total"] == EARNED

    assert int(ok("worker", "earnings", *key, *b)["claimable"]) == EARNED
    # on a node of the realm's chain the worker can skip the realm's relay: the proof
    # comes from the realm, the claim goes from the worker's key straight to the chain
    out = ok("worker", "earnings", "claim", *key, *b, *(["--chain-rpc", paid.config.chain_rpc or ""] if rpc else []))
    assert int(out["amount"]) == EARNED
    assert ok("wallet", "exit", "--status", *b)["exit"] == "none"

    wallet = ok("wallet", *b)
    assert int(wallet["available"]) == 5 * ONE // 2 - ECHO_PRICE
    assert wallet["chain"]["deposit"] == wallet["available"]
    assert int(wallet["chain"]["spent"]) == ECHO_PRICE and int(wallet["charged"]) == ECHO_PRICE
    wallet_w = ok("wallet", *key, *b)
    assert int(wallet_w["chain"]["tokens"]) == EARNED and wallet_w["earned"] == "0"
    journal_equals_chain(paid.ledger, user.address, worker.address)

    audit = ok("ledger", "audit", *rpc, "--receipt", answer["guid"])
    assert audit["proof"]["valid"]


def test_faucet_deposit_paid_query_settle_claim_audit(paid: PaidRealm) -> None:
    full_path(paid, [])


def test_the_same_path_on_a_hardhat_node_and_an_exit_after_the_realm_is_gone(
    tmp_path: Path, home: Path, config: LedgerConfig
) -> None:
    from ledger.chain import Chain

    with HardhatNode(tmp_path) as node:
        rpc = ["--chain-rpc", node.url]
        deployed = ok("chain", "deploy", *rpc)
        assert deployed["chain_id"] == 31337
        realm = PaidRealm(replace(config, chain_rpc=node.url), home)
        b = ["--broker", realm.realm.url]
        try:
            full_path(realm, rpc)
            started = ok("wallet", "exit", *b)
            assert started["exit"] == "waiting" and started["window_s"] == 10
        finally:
            realm.close()
        # The operator is gone, broker and all. The user still leaves with what is left:
        # the realm's chain and contracts were kept when it last answered.
        with Chain.connect(node.url) as chain:
            chain.time_travel(started["window_s"])
        refused = mtor("wallet", "exit", "--finish", *b)
        assert refused.exit_code != 0 and "[unreachable]" in refused.stderr and "--chain-rpc" in refused.stderr
        done = ok("wallet", "exit", "--finish", *b, *rpc)
        assert int(done["amount"]) == 5 * ONE // 2 - ECHO_PRICE and done["exit"] == "none"
        assert node.proc is not None and node.proc.poll() is None
    assert node.proc.poll() is not None  # the node was stopped by its pid


def test_without_funds_nothing_is_dispatched(paid: PaidRealm) -> None:
    paid.billing.welcome_grant = 0  # a realm without welcome grants
    result = mtor("ask", "--broker", paid.realm.url, "--intent", "echo", "hello")
    assert result.exit_code == 6
    line = result.stderr.strip().splitlines()[-1]
    assert "[insufficient_funds]" in line and "balance 0" in line
    assert paid.ledger.journal.count("hold") == 0
    assert paid.ledger.journal.open_holds() == {}


def test_a_new_user_gets_the_welcome_grant_and_can_ask(paid: PaidRealm) -> None:
    answer = ok("ask", "--broker", paid.realm.url, "--intent", "echo", "first time")
    assert int(answer["cost"]) == ECHO_PRICE
    user = me().address
    assert paid.ledger.journal.balance(A.user(user)) == paid.config.welcome_grant - ECHO_PRICE
    assert paid.ledger.journal.get("welcome", user) is not None
    assert paid.ledger.audit().clean  # promised, not escrowed yet: the audit knows
    paid.ledger.settle()  # escrows pending grants first, as the upkeep does
    with paid.ledger.session() as s:
        assert s.ledger.functions.accountOf(user).call() == [paid.config.welcome_grant - ECHO_PRICE, ECHO_PRICE]
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
            assert s.ledger.functions.accountOf(user.address).call() == [ONE - 2 * ECHO_PRICE, 2 * ECHO_PRICE]
        assert second.ledger.audit().clean
    finally:
        second.close()


def test_two_workers_three_users_settle_each_worker_claims_one_user_exits(
    config: LedgerConfig, home: Path
) -> None:
    """The issue's "done when": no step needs the operator's trust. Users and workers
    act from their own keys through the realm (--broker): funds, claims, the exit."""
    cfg = replace(config, exit_window_s=20)
    realm = PaidRealm(cfg, home, workers=2)
    b = ["--broker", realm.realm.url]
    try:
        user_keys = [home / f"user-{i}.json" for i in range(3)]
        users = [load_or_create_account(key) for key in user_keys]
        for key in user_keys:
            assert mtor("wallet", "faucet", "--key", str(key), *b).exit_code == 0
            assert ok("wallet", "deposit", "2", "--key", str(key), *b)["credited"] is True

        async def ask(user: Any, prompt: str) -> Any:
            async with RealmClient(realm.realm.url, user) as client:
                return await client.ask(prompt, intent="echo", params={"delay_s": 0.2})

        async def rounds() -> list[Any]:  # at once: each worker (one slot) takes some
            asks = [ask(u, f"round {r} from user {i}") for r in range(3) for i, u in enumerate(users)]
            return await asyncio.gather(*asks)

        assert {r.cost for r in asyncio.run(rounds())} == {ECHO_PRICE}
        workers = [load_or_create_account(key) for key in realm.worker_keys]
        earned = {w.address: realm.ledger.journal.balance(A.worker(w.address)) for w in workers}
        assert all(earned.values()) and sum(earned.values()) == 9 * EARNED  # both served
        [epoch] = realm.ledger.settle()
        assert epoch.receipts == 9
        for key, w in zip(realm.worker_keys, workers, strict=True):
            assert int(ok("worker", "earnings", "claim", "--key", str(key), *b)["amount"]) == earned[w.address]

        leaver = ["--key", str(user_keys[2]), *b]
        assert ok("wallet", "exit", *leaver)["exit"] == "waiting"  # the user's key only
        with pytest.raises(RealmError) as info:
            realm.ask(users[2], "one more?")
        assert info.value.code == "exit_pending"
        assert ok("wallet", *leaver)["exiting"] is True
        with realm.ledger.session() as s:
            s.chain.time_travel(20)
        done = ok("wallet", "exit", "--finish", *leaver)
        assert int(done["amount"]) == 2 * ONE - 3 * ECHO_PRICE
        after = ok("wallet", *leaver)  # the realm booked the exit: nothing left there
        assert after["available"] == "0" and int(after["chain"]["tokens"]) == 998 * ONE + int(done["amount"])
        assert realm.ledger.audit().clean
    finally:
        realm.close()


def test_a_query_without_a_valid_authorisation_is_refused_with_a_hint(
    paid: PaidRealm, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mtor_cli.client as sdk
    from broker.protocol import Authorisation, Error, SubmitQuery

    monkeypatch.setattr(sdk, "_RESIGN", 0)  # a client that does not sign again: what the broker says
    user = me()
    paid.ledger.faucet(user)
    paid.ledger.deposit(user, ONE)
    terms = paid.ledger.terms()
    assert terms is not None

    async def submit(guid: str, auth: Authorisation | None) -> Any:
        async with RealmClient(paid.realm.url, user) as client:
            assert client.welcome is not None and client.welcome.ledger is not None
            assert client.welcome.ledger.contract == terms.contract
            client._spending = None  # and does not sign at all
            events = [e async for e in client.submit(SubmitQuery(guid=guid, prompt="hi", intent="echo", authorisation=auth))]
            return events[-1]

    missing = asyncio.run(submit("unsigned", None))
    assert isinstance(missing, Error) and missing.code == "bad_authorisation"
    assert "sign it by themselves" in missing.hint
    assert missing.detail["needed"] == ECHO_PRICE and missing.detail["contract"] == terms.contract
    forged = asyncio.run(submit("forged", Authorisation(total=10 * ONE, signature="0x" + "ab" * 65)))
    assert isinstance(forged, Error) and forged.code == "bad_authorisation" and "not signed by" in forged.message
    assert paid.ledger.journal.count("hold") == 0
    monkeypatch.undo()
    # the SDK as shipped signs by itself, right the first time: the same user just asks
    refused = paid.ledger.journal.count("hold")
    assert paid.ask(user, "signed").cost == ECHO_PRICE
    assert paid.ledger.journal.count("hold") == refused + 1


def test_broker_status_shows_the_ledger_upkeep(paid: PaidRealm) -> None:
    user = me()
    paid.ledger.faucet(user)
    paid.ledger.deposit(user, ONE)
    paid.ask(user, "one")
    out = mtor("broker", "status", "-b", paid.realm.url)
    assert out.exit_code == 0, out.output
    assert "ledger upkeep" in out.stdout and "unsettled receipts 1" in out.stdout
    data = json.loads(mtor("broker", "status", "-b", paid.realm.url, "--json").stdout)
    assert data["stats"]["ledger"]["unsettled_receipts"] == 1
    paid.ledger.settle()
    data = json.loads(mtor("broker", "status", "-b", paid.realm.url, "--json").stdout)
    assert data["stats"]["ledger"]["unsettled_receipts"] == 0 and data["stats"]["ledger"]["settled_epochs"] == 1

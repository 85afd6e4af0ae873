"""End to end: faucet -> deposit -> a paid query through a real broker and worker, signed
by the client SDK -> the worker earns -> settle -> claim -> the chain equals the journal,
audit clean. Runs on the embedded chain, and the same path on a real `hardhat node`; and
the issue's whole story: two workers, three users, settlement, claims, an exit.
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

from broker.billing import InsufficientFunds, PaymentRefused
from ledger import Ledger, LedgerConfig
from ledger import accounts as A
from ledger.units import ONE
from mtor_cli.app import app
from mtor_cli.client import RealmClient, RealmError
from mtor_cli.identity import load_or_create_account
from tests.support.hardhat import HardhatNode
from tests.support.peers import FakeWorker, fail
from tests.support.realm import ThreadRealm
from worker.backends.base import Device
from worker.backends.echo import EchoBackend

ECHO_PRICE = ONE // 100  # the default rule: one query


def mtor(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    return result


class PaidRealm:
    """A broker charging through RealmBilling, with one echo worker of known key."""

    def __init__(self, config: LedgerConfig, home: Path, workers: int = 1) -> None:
        self.config = config
        self.ledger = Ledger(config, commit="loop")
        if self.ledger.deployment() is None:
            self.ledger.deploy()  # what the realm's upkeep does first on a new embedded chain
        self.billing = self.ledger.billing(
            insufficient_funds=InsufficientFunds, refused=PaymentRefused, welcome_grant=config.welcome_grant
        )
        self.realm = ThreadRealm(home / "broker.db", billing=self.billing).start()
        self.worker_keys = [home / f"worker-key-{i}.json" for i in range(workers)]
        self.worker_key = self.worker_keys[0]
        self.workers = [
            self.realm.add_worker([EchoBackend(None, Device())], key_path=key) for key in self.worker_keys
        ]
        self.worker = self.workers[0]
        self.realm.wait_workers(workers, "echo")

    def ask(self, account: Any, prompt: str, **params: Any) -> Any:
        async def go() -> Any:
            async with RealmClient(self.realm.url, account) as client:
                return await client.ask(prompt, intent="echo", params=params)

        return asyncio.run(go())

    def close(self) -> None:
        self.realm.stop()
        self.ledger.close()


@pytest.fixture
def paid(config: LedgerConfig, home: Path) -> Iterator[PaidRealm]:
    realm = PaidRealm(replace(config, welcome_grant=100 * ONE), home)
    yield realm
    realm.close()


def me() -> Any:
    from mtor_cli.identity import load_or_create_account

    return load_or_create_account()


def journal_equals_chain(led: Ledger, *addresses: str) -> None:
    with led.session() as s:
        for who in addresses:
            dep, spent = s.ledger.functions.accountOf(who).call()
            held = led.journal.balance(A.user(who)) + led.journal.balance(A.hold(who))
            assert dep == held and spent == led.journal.charged(who), who
            assert led.journal.balance(A.worker(who)) == 0, who  # everything earned was claimed


def full_path(paid: PaidRealm, rpc: list[str]) -> None:
    assert mtor("wallet", "faucet", *rpc).exit_code == 0
    deposited = mtor("wallet", "deposit", "2.5", *rpc)
    assert deposited.exit_code == 0, deposited.output
    user = me()

    result = mtor("ask", "--broker", paid.realm.url, "--intent", "echo", "--json", "pay me back")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["text"] == "pay me back" and answer["cost"] == ECHO_PRICE

    from mtor_cli.identity import load_or_create_account

    worker = load_or_create_account(paid.worker_key)
    key = ["--key", str(paid.worker_key)]
    earn = json.loads(mtor("worker", "earnings", *key, *rpc, "--json").stdout)
    assert earn["unclaimed"] == ECHO_PRICE * 9 // 10 and earn["claimable"] == 0
    assert earn["awaiting_settlement"] == ECHO_PRICE * 9 // 10

    settled = mtor("ledger", "settle", *rpc, "--json")
    assert settled.exit_code == 0, settled.output
    assert json.loads(settled.stdout)["settled"][0]["earnings_total"] == ECHO_PRICE * 9 // 10

    # on a chain others can reach, the worker needs only the realm's address: proof and
    # contracts come from its /v1/ledger/*, the claim goes from the worker's key to the chain
    where = ["--broker", paid.realm.url] if rpc else []
    out = mtor("worker", "earnings", "claim", *key, *where, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["amount"] == ECHO_PRICE * 9 // 10
    status = mtor("wallet", "exit", "--status", *where, "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["exit"] == "none"

    wallet = json.loads(mtor("wallet", *rpc, "--json").stdout)
    assert wallet["available"] == 5 * ONE // 2 - ECHO_PRICE
    assert wallet["chain"]["deposit"] == wallet["available"]
    assert wallet["chain"]["spent"] == ECHO_PRICE
    wallet_w = json.loads(mtor("wallet", *key, *rpc, "--json").stdout)
    assert wallet_w["chain"]["tokens"] == ECHO_PRICE * 9 // 10
    journal_equals_chain(paid.ledger, user.address, worker.address)

    audit = mtor("ledger", "audit", *rpc, "--receipt", answer["guid"], "--json")
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.stdout)["proof"]["valid"]


def test_faucet_deposit_paid_query_settle_claim_audit(paid: PaidRealm) -> None:
    full_path(paid, [])
    # the embedded chain lives on the realm's machine: a remote command says so
    out = mtor("worker", "earnings", "claim", "--broker", paid.realm.url)
    assert out.exit_code != 0 and "[embedded_chain]" in out.stderr


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
    paid.billing.welcome_grant = 0  # a realm without welcome grants
    result = mtor("ask", "--broker", paid.realm.url, "--intent", "echo", "hello")
    assert result.exit_code == 6
    line = result.stderr.strip().splitlines()[-1]
    assert "[insufficient_funds]" in line and "balance 0" in line
    assert paid.ledger.journal.count("hold") == 0
    assert paid.ledger.journal.open_holds() == {}


def test_a_new_user_gets_the_welcome_grant_and_can_ask(paid: PaidRealm) -> None:
    result = mtor("ask", "--broker", paid.realm.url, "--intent", "echo", "--json", "first time")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cost"] == ECHO_PRICE
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
    """The issue's "done when": no step needs the operator's trust."""
    cfg = replace(config, exit_window_s=20)
    realm = PaidRealm(cfg, home, workers=2)
    try:
        from eth_account import Account

        users = [Account.create() for _ in range(3)]
        for user in users:
            realm.ledger.faucet(user)
            realm.ledger.deposit(user, 2 * ONE)
        async def ask(user: Any, prompt: str) -> Any:
            async with RealmClient(realm.realm.url, user) as client:
                return await client.ask(prompt, intent="echo", params={"delay_s": 0.2})

        async def rounds() -> list[Any]:  # at once: each worker (one slot) takes some
            asks = [ask(u, f"round {r} from user {i}") for r in range(3) for i, u in enumerate(users)]
            return await asyncio.gather(*asks)

        assert {r.cost for r in asyncio.run(rounds())} == {ECHO_PRICE}
        workers = [load_or_create_account(key) for key in realm.worker_keys]
        earned = {w.address: realm.ledger.journal.balance(A.worker(w.address)) for w in workers}
        assert all(earned.values()) and sum(earned.values()) == 9 * ECHO_PRICE * 9 // 10  # both served
        [epoch] = realm.ledger.settle()
        assert epoch.receipts == 9
        for key, w in zip(realm.worker_keys, workers, strict=True):
            out = mtor("worker", "earnings", "claim", "--key", str(key), "--json")
            assert out.exit_code == 0, out.output
            assert json.loads(out.stdout)["amount"] == earned[w.address]
        leaver = users[2]
        realm.ledger.exit(leaver, "start")
        with pytest.raises(RealmError) as info:
            realm.ask(leaver, "one more?")
        assert info.value.code == "exit_pending"
        with realm.ledger.session() as s:
            s.chain.time_travel(20)
        done = realm.ledger.exit(leaver, "finish")
        assert done["amount"] == 2 * ONE - 3 * ECHO_PRICE
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

    async def submit(guid: str, auth: Authorisation | None) -> Any:
        async with RealmClient(paid.realm.url, user) as client:
            assert client.welcome is not None and client.welcome.ledger is not None
            assert client.welcome.ledger.contract == paid.ledger.terms().contract
            client._spending = None  # and does not sign at all
            events = [e async for e in client.submit(SubmitQuery(guid=guid, prompt="hi", intent="echo", authorisation=auth))]
            return events[-1]

    missing = asyncio.run(submit("unsigned", None))
    assert isinstance(missing, Error) and missing.code == "bad_authorisation"
    assert "sign it by themselves" in missing.hint
    assert missing.detail["needed"] == ECHO_PRICE and missing.detail["contract"] == paid.ledger.terms().contract
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

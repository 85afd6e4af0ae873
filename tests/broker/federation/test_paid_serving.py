"""A paid serving realm serves a peer realm on credit, and its workers are paid from the peer's escrow.

Two realms on 127.0.0.1 and a `hardhat node`, both charging for real
(RealmBilling, ledger v2) on one $9000 token: A's users pay A with signed
Spend authorisations; only B serves the model "only-b". B charges A's
forwards to A's account in its journal under A's credit line (no Spend
authorisation: A is a pinned peer), its worker earns as for a local user;
B's epoch waits until A has paid (the earnings root must be backed on chain),
B claims from A's escrow and credits it to its own ledger
(`mtor federation settle a`), settles, its worker claims, and both audits
are clean.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.billing import InsufficientFunds, PaymentRefused
from ledger import Ledger, LedgerConfig
from ledger import accounts as A
from ledger.errors import ChainError
from ledger.units import ONE
from mtor_cli.client import RealmClient, RealmError, new_guid
from mtor_cli.identity import load_or_create_account
from tests.support.federation import Grid, realm_key
from tests.support.hardhat import HardhatNode
from tests.support.peers import new_account
from tests.support.realm import mtor_command, process_env, wait_until
from worker.backends.base import Device
from worker.backends.echo import EchoBackend

PRICE = ONE // 100  # B's price (and hold) for an echo query: 0.01 $9000
FEE = PRICE // 10  # B's realm fee, 10 %
CREDIT = PRICE * 3 // 2  # A may owe B one query, not two


def _config(home: Path, node: HardhatNode, **extra: Any) -> LedgerConfig:
    return LedgerConfig(home / "data", chain_rpc=node.url, welcome_grant=0, **extra)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("paid")
    node = HardhatNode(root).start()
    opened: list[Ledger] = []
    grid = None
    try:
        led_a = Ledger(_config(root / "home-a", node), commit="loop")
        opened.append(led_a)
        token = led_a.deploy().token
        led_b = Ledger(_config(root / "home-b", node, token=token), commit="loop")
        opened.append(led_b)
        assert led_b.deploy().token == token  # realms that federate share one $9000 token
        # B's operator side (settling, claims, the audit): its own connection, as the upkeep and CLI have.
        ops_b = Ledger(_config(root / "home-b", node, token=token))
        opened.append(ops_b)
        billing = {
            n: led.billing(insufficient_funds=InsufficientFunds, refused=PaymentRefused)
            for n, led in (("a", led_a), ("b", led_b))
        }
        grid = Grid(root / "grid", "ab", billing=billing).start()
        worker_key = root / "worker-b.key"
        grid.realms["b"].add_worker([EchoBackend("only-b", Device())], slots=2, key_path=worker_key)
        grid.realms["b"].wait_workers(1)
        grid.pin("a", "b")
        grid.pin("b", "a", max_credit=CREDIT)
        grid.wait_linked("a", "b", "echo")
        user = new_account()
        led_a.faucet(user)
        led_a.deposit(user, 10 * ONE)
        yield {
            "node": node, "grid": grid, "user": user, "root": root, "a": led_a, "b": led_b, "ops_b": ops_b,
            "worker": load_or_create_account(worker_key), "a_key": realm_key(grid.dbs["a"]).address,
        }
    finally:
        if grid is not None:
            grid.stop()
        for led in opened:
            led.close()
        node.stop()


def _ask(world: dict[str, Any], guid: str) -> Any:
    async def go() -> Any:
        async with RealmClient(world["grid"].url("a"), world["user"]) as client:
            return await client.ask("paid on credit", intent="echo", model="only-b", guid=guid)

    return asyncio.run(go())


def _mtor(world: dict[str, Any], realm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mtor_command("federation", *args, "--db", str(world["grid"].dbs[realm]), "--json"),
        env=process_env(world["root"] / f"home-{realm}"), capture_output=True, text=True, timeout=120,
    )


def test_a_paid_realm_serves_a_peer_on_credit_and_its_worker_is_paid_from_the_peers_escrow(
    world: dict[str, Any],
) -> None:
    grid: Grid = world["grid"]
    led_a: Ledger = world["a"]
    ops_b: Ledger = world["ops_b"]
    a_key, worker = world["a_key"], world["worker"]
    journal_b = ops_b.journal

    first = new_guid()
    assert _ask(world, first).text == "paid on credit"
    # B charged A's account under A's credit line, and its worker earned as for a local user.
    wait_until(lambda: journal_b.balance(A.worker(worker.address)) == PRICE - FEE, 10, "B's worker to earn")
    assert journal_b.balance(A.realm(a_key)) == -CREDIT
    assert journal_b.balance(A.user(a_key)) == CREDIT - PRICE
    assert journal_b.peers_owe() == {a_key: PRICE}
    capture = list(journal_b.kinds("capture"))
    assert [(t.payer, t.worker, t.amount, t.fee) for t in capture] == [(a_key, worker.address, PRICE, FEE)]

    # A retried guid is replayed: charged once at A and once at B.
    assert _ask(world, first).text == "paid on credit"
    assert len(list(journal_b.kinds("capture"))) == 1
    assert [t.ref for t in led_a.journal.kinds("capture")] == [first]

    # Past its credit: refused with the peer's own code.
    with pytest.raises(RealmError) as refused:
        _ask(world, new_guid())
    assert refused.value.code == "peer_credit_exceeded"

    # B's earnings root is not backed on chain until A pays: the epoch waits, and says why.
    with pytest.raises(ChainError) as waiting:
        ops_b.settle()
    assert waiting.value.code == "awaiting_peer_payment" and a_key in waiting.value.message

    funded = _mtor(world, "a", "fund", "1")
    assert funded.returncode == 0, funded.stderr
    settled = _mtor(world, "b", "settle", "a", "--chain-rpc", world["node"].url)
    assert settled.returncode == 0, settled.stderr
    payee = json.loads(settled.stdout)["as_payee"]
    assert payee["amount"] == str(PRICE) and payee["paid"] == str(PRICE)
    assert payee["credited"]["amount"] == str(PRICE) and payee["credited"]["total"] == str(PRICE)
    again = json.loads(_mtor(world, "b", "settle", "a", "--chain-rpc", world["node"].url).stdout)["as_payee"]
    assert again["tx"] is None and again["credited"]["tx"] is None  # settling twice credits nothing twice

    # A's payment is booked to its account at B: its credit is whole again, it owes nothing.
    wait_until(lambda: journal_b.balance(A.user(a_key)) == CREDIT, 10, "B's journal to book A's payment")
    assert [t.amount for t in list(journal_b.kinds("realm_payment"))] == [PRICE]
    assert journal_b.peers_owe() == {}

    epochs = ops_b.settle()
    assert [e.earnings_total for e in epochs] == [PRICE - FEE]
    claimed = ops_b.claim(worker)
    assert int(claimed["amount"]) == PRICE - FEE
    with ops_b.session() as s:
        assert int(s.token.functions.balanceOf(worker.address).call()) == PRICE - FEE
        assert int(s.ledger.functions.feeAvailable().call()) == FEE
        assert int(s.ledger.functions.collected().call()) == PRICE  # nothing but A's payment

    # B's broker freed A's credit: the next intent runs.
    wait_until(lambda: grid.peer("b", "a")["credit"]["owed_to_us"]["settled"] == str(PRICE), 10, "B to see the claim")
    assert _ask(world, new_guid()).text == "paid on credit"
    wait_until(lambda: len(list(journal_b.kinds("capture"))) == 2, 10, "B's second capture")

    for led in (ops_b, led_a):
        report = led.audit()
        assert report.clean, report.findings

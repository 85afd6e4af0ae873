"""Settlement between realms on a real EVM: credit, claims against a realm's escrow, journals agreeing with the chain.

Three realms on 127.0.0.1 and a `hardhat node`. A charges its users through
its real ledger (RealmLedger on the node, signed Spend authorisations); only
B serves the model "only-b", only C "only-c". B charges A through a dict
billing (price 100, cost 60 base units) and gives A a credit of 150: one
intent fits, a second would pass it (``peer_credit_exceeded``). A escrows for
its peers (`mtor federation fund`), B claims with A's signed cumulative total
(`mtor federation settle a`), A's credit at B is freed, and the chain, A's and
B's federation stores and A's ledger audit all agree.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from broker.billing import InsufficientFunds, PaymentRefused
from ledger import Ledger, LedgerConfig
from ledger import realms as R
from ledger.units import ONE
from mtor_cli.client import RealmClient, RealmError, new_guid
from tests.support.billing import COST, PRICE, DictBilling
from tests.support.federation import Grid, realm_key
from tests.support.hardhat import HardhatNode
from tests.support.peers import new_account
from tests.support.realm import mtor_command, process_env, wait_until
from worker.backends.base import Device
from worker.backends.echo import EchoBackend

CREDIT = 150  # base units: B serves A one intent (price 100, cost 60) on credit, not two


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("settle")
    node = HardhatNode(root).start()
    led = None
    grid = None
    try:
        led = Ledger(LedgerConfig(root / "home-a" / "data", chain_rpc=node.url, welcome_grant=0), commit="loop")
        led.deploy()
        a_key = realm_key(root / "grid" / "a" / "broker.db").address
        b_billing = DictBilling({a_key: 10**30})
        a_billing = led.billing(insufficient_funds=InsufficientFunds, refused=PaymentRefused)
        grid = Grid(root / "grid", "abc", billing={"a": a_billing, "b": b_billing}).start()
        grid.realms["b"].add_worker([EchoBackend("only-b", Device())], slots=2)
        grid.realms["c"].add_worker([EchoBackend("only-c", Device())], slots=2)
        grid.realms["b"].wait_workers(1)
        grid.realms["c"].wait_workers(1)
        grid.pin("a", "b")
        grid.pin("b", "a", max_credit=CREDIT)
        grid.pin_both("a", "c")
        grid.wait_linked("a", "b", "echo")
        grid.wait_linked("a", "c", "echo")
        user = new_account()
        led.faucet(user)
        led.deposit(user, 10 * ONE)
        yield {"node": node, "led": led, "grid": grid, "user": user, "b_billing": b_billing, "root": root}
    finally:
        if grid is not None:
            grid.stop()
        if led is not None:
            led.close()
        node.stop()


def _ask(grid: Grid, user: Any, guid: str, tokens: list[str] | None = None) -> Any:
    async def go() -> Any:
        async with RealmClient(grid.url("a"), user) as client:
            return await client.ask("pay me later", intent="echo", model="only-b", guid=guid,
                                    on_token=(tokens.append if tokens is not None else None))

    return asyncio.run(go())


def _mtor(world: dict[str, Any], realm: str, *args: str) -> subprocess.CompletedProcess[str]:
    grid: Grid = world["grid"]
    home = world["root"] / f"home-{realm}"
    return subprocess.run(
        mtor_command("federation", *args, "--db", str(grid.dbs[realm]), "--json"),
        env=process_env(home), capture_output=True, text=True, timeout=120,
    )


def test_a_peer_over_its_credit_is_refused_and_recovers_after_settling_on_chain(world: dict[str, Any]) -> None:
    grid: Grid = world["grid"]
    led: Ledger = world["led"]
    user = world["user"]
    a, b = grid.keys["a"], grid.keys["b"]

    tokens: list[str] = []
    first = new_guid()
    result = _ask(grid, user, first, tokens)
    assert result.text == "pay me later" and "".join(tokens) == "pay me later"
    # B's receipt reached A, A's signed ack reached B (and its signature held).
    wait_until(lambda: grid.peer("b", "a")["credit"]["owed_to_us"]["acknowledged"] == COST, 10, "A's ack at B")
    assert grid.peer("a", "b")["credit"]["we_owe"]["accepted"] == COST
    assert grid.peer("b", "a")["served"]["traffic"].get("bad_acks", 0) == 0

    with pytest.raises(RealmError) as refused:
        _ask(grid, user, new_guid())
    assert refused.value.code == "peer_credit_exceeded"

    # B cannot be paid from an escrow A never funded: a clear error, nothing recorded.
    empty = _mtor(world, "b", "settle", "a", "--chain-rpc", world["node"].url)
    assert empty.returncode != 0 and "escrow_empty" in empty.stdout + empty.stderr

    funded = _mtor(world, "a", "fund", "0.000000000000001")  # 1000 base units
    assert funded.returncode == 0, funded.stderr
    assert json.loads(funded.stdout)["escrow"] == "1000"

    settled = _mtor(world, "b", "settle", "a", "--chain-rpc", world["node"].url)
    assert settled.returncode == 0, settled.stderr
    claim = json.loads(settled.stdout)["as_payee"]
    assert (claim["amount"], claim["paid"], claim["escrow_left"]) == (str(COST), str(COST), str(1000 - COST))
    assert 0 < claim["gas"] < 110_000
    again = json.loads(_mtor(world, "b", "settle", "a", "--chain-rpc", world["node"].url).stdout)["as_payee"]
    assert again["tx"] is None and again["paid"] == str(COST)  # settling twice pays nothing twice

    # B's running broker took the settlement up: A's credit is free again.
    wait_until(lambda: grid.peer("b", "a")["credit"]["owed_to_us"]["settled"] == COST, 10, "B to see the claim")
    second = new_guid()
    assert _ask(grid, user, second).text == "pay me later"

    # A retried guid is replayed: charged once at A (its journal) and once at B (its receipts).
    assert _ask(grid, user, first).text == "pay me later"
    captures = [t.ref for t in led.journal.kinds("capture")]
    assert sorted(captures) == sorted([first, second])
    wait_until(lambda: grid.peer("b", "a")["credit"]["owed_to_us"]["charged"] == 2 * COST, 10, "B's receipts")
    assert len([c for c in world["b_billing"].calls if c[0] == "capture"]) == 2

    # A takes up what B claimed from its escrow; the chain and both stores agree.
    payer = json.loads(_mtor(world, "a", "settle", "b").stdout)["as_payer"]
    assert payer["paid"] == str(COST) and payer["escrow_left"] == str(1000 - COST)
    with led.session() as s:
        assert R.paid(s.chain, s.deployment.ledger, a, b) == COST
        assert R.escrow(s.chain, s.deployment.ledger, a) == 1000 - COST
        assert int(s.token.functions.balanceOf(b).call()) == COST  # B's realm key got the tokens
    wait_until(lambda: grid.peer("a", "b")["credit"]["we_owe"]["settled"] == COST, 10, "A to record it")
    we_owe = grid.peer("a", "b")["credit"]["we_owe"]
    owed = grid.peer("b", "a")["credit"]["owed_to_us"]
    assert we_owe["accepted"] == owed["charged"] == 2 * COST and we_owe["unsettled"] == COST
    assert owed["settled"] == COST and owed["used"] == COST
    # A's own ledger still audits clean: the realm escrow is no user's deposit.
    report = led.audit()
    assert report.clean, report.findings
    assert PRICE > COST  # what B held for A's intents in flight came back when they finished

"""Settlement: per epoch, each payer redeemed once under its signature, the earnings root posted,
transactions under the gas cap, outages caught up in bounded steps, one bad payer blocks nobody."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from ledger import ChainError, Ledger, LedgerConfig, merkle
from ledger import accounts as A
from ledger import settlement as S
from ledger.settlement import SETTLED, Settler
from ledger.units import ONE
from tests.ledger.conftest import hold, new_account, pay


def chain_account(led: Ledger, address: str) -> list[int]:
    with led.session() as s:
        return list(s.ledger.functions.accountOf(address).call())


def funded(led: Ledger, amount: int = 10 * ONE) -> Any:
    account = new_account()
    led.faucet(account)
    led.deposit(account, amount)
    return account


def test_an_epoch_redeems_each_payer_once_and_posts_the_roots(led: Ledger, payer: Any) -> None:
    other = funded(led)
    w1, w2 = new_account(), new_account()
    b = led.billing()
    costs = [pay(b, payer, w1, "q1"), pay(b, payer, w2, "q2"), pay(b, other, w1, "q3"), pay(b, payer, w1, "q4")]
    [epoch] = led.settle()
    assert (epoch.number, epoch.receipts, epoch.state) == (1, 4, SETTLED)
    earned = {w1.address: (costs[0] + costs[2] + costs[3]) * 9 // 10, w2.address: costs[1] * 9 // 10}
    _, tree = merkle.earnings_tree(earned)
    assert epoch.earnings_root == tree[-1][0] and epoch.earnings_total == sum(earned.values())
    with led.session() as s:
        fn = s.ledger.functions
        assert fn.lastEpoch().call() == 1
        assert fn.receiptsRoot(1).call() == epoch.root
        assert fn.earningsRoot().call() == epoch.earnings_root
        assert fn.earningsTotal().call() == epoch.earnings_total
        assert fn.journalHead().call() == led.journal.hash_at(epoch.last_txn) == epoch.journal_head
        assert fn.collected().call() == sum(costs)
    mine = costs[0] + costs[1] + costs[3]
    assert chain_account(led, payer.address) == [100 * ONE - mine, mine]
    assert chain_account(led, other.address) == [10 * ONE - costs[2], costs[2]]
    assert led.settle() == []  # nothing new: no empty epoch
    assert led.audit().clean


def test_each_epochs_receipts_are_published_and_recompute_to_its_root(led: Ledger, payer: Any) -> None:
    b = led.billing()
    for i in range(3):
        pay(b, payer, new_account(), f"q{i}")
    [epoch] = led.settle()
    doc = json.loads(led.settler.receipts_file(1).read_text())
    assert [r["guid"] for r in doc["receipts"]] == ["q0", "q1", "q2"]
    leaves = [
        merkle.receipt_leaf(r["guid"], r["payer"], r["worker"], int(r["amount"]), int(r["fee"]), r["time"])
        for r in doc["receipts"]
    ]
    with led.session() as s:
        assert merkle.root(leaves) == bytes(s.ledger.functions.receiptsRoot(1).call())
    earnings = json.loads(led.settler.earnings_file(1).read_text())
    assert int(earnings["earnings_total"]) == epoch.earnings_total


def test_epochs_are_due_after_n_queries_or_n_seconds(led: Ledger, payer: Any) -> None:
    s = Settler(led.journal, led.config.root / "epochs", epoch_seconds=3600, epoch_queries=3)
    b = led.billing()
    w = new_account()
    assert not s.due() and s.wake_in() is None
    pay(b, payer, w, "a")
    pay(b, payer, w, "b")
    assert not s.due() and 3590 < (s.wake_in() or 0) <= 3600
    pay(b, payer, w, "c")
    assert s.due()
    timed = Settler(led.journal, led.config.root / "epochs", epoch_seconds=5, epoch_queries=1000)
    assert not timed.due()
    assert timed.due(now=time.time() + 6)


def test_an_epoch_holds_at_most_epoch_queries_receipts(config: LedgerConfig, payer: Any) -> None:
    with Ledger(replace(config, epoch_queries=3)) as led:
        b = led.billing()
        for i in range(7):
            pay(b, payer, new_account(), f"q{i}")
        epochs = led.settle()
        assert [e.receipts for e in epochs] == [3, 3, 1]
        assert led.audit().clean


def test_attack_negative_usage_does_not_stop_settlement(led: Ledger, payer: Any) -> None:
    b = led.billing()
    assert pay(b, payer, new_account(), "minting", {"prompt_tokens": -2000}) == 0
    honest = pay(b, payer, new_account(), "honest")
    [epoch] = led.settle()
    assert epoch.receipts == 2
    assert chain_account(led, payer.address) == [100 * ONE - honest, honest]
    assert led.audit().clean


def test_redemptions_are_split_to_stay_under_the_gas_cap(led: Ledger, config: LedgerConfig) -> None:
    payers = [funded(led, ONE) for _ in range(24)]
    b = led.billing()
    worker = new_account()
    for i, p in enumerate(payers):
        pay(b, p, worker, f"q{i}")
    cap = 150_000  # about ten redemptions
    with Ledger(replace(config, gas_cap=cap)) as capped:
        [epoch] = capped.settle()
        with led.session() as s:
            redeems = s.ledger.events.Redeemed.get_logs(from_block=s.deployment.block)
            gas = [int(s.chain.w3.eth.get_transaction_receipt(lg["transactionHash"])["gasUsed"]) for lg in redeems]
            assert sum(int(lg["args"]["payers"]) for lg in redeems) == 24
            assert len(redeems) >= 3 and max(gas) <= cap
            assert s.ledger.functions.collected().call() == epoch.earnings_total + capped.journal.balance(A.FEE)
        assert capped.audit().clean


def test_a_chain_outage_is_caught_up_in_bounded_steps(config: LedgerConfig, payer: Any) -> None:
    w = new_account()
    down = Ledger(replace(config, chain_rpc="http://127.0.0.1:9", epoch_queries=2))  # the node is unreachable
    b = down.billing()
    paid = [pay(b, payer, w, f"q{i}") for i in range(7)]
    with pytest.raises(ChainError) as info:
        down.settle()
    assert info.value.code == "chain_unreachable"
    # the epochs were closed before the chain was tried, each bounded; queries go on meanwhile
    assert [e.receipts for e in down.settler.pending()] == [2, 2, 2, 1]
    down.close()
    with Ledger(replace(config, epoch_queries=2)) as back:
        with back.session() as s:
            first = back.settler.settle(s, max_epochs=2)  # a backlog goes in bounded steps
            assert [e.number for e in first] == [1, 2]
            rest = back.settler.settle(s, max_epochs=2)
            assert [e.number for e in rest] == [3, 4]
        assert chain_account(back, payer.address)[1] == sum(paid)
        assert back.audit().clean


def test_an_epoch_whose_answer_was_lost_is_not_settled_twice(led: Ledger, payer: Any) -> None:
    cost = pay(led.billing(), payer, new_account(), "q1")
    epoch = led.settler.close_epoch(force=True)
    assert epoch is not None
    with led.session() as s:  # both transactions went through, but the realm crashed before recording them
        led.settler.redeem(s, [payer.address])
        s.chain.transact(
            s.settler,
            s.ledger.functions.settle(
                1, epoch.root, 1, epoch.earnings_root, epoch.earnings_total, epoch.journal_head
            ),
            what="settle",
        )
    [again] = led.settle()
    assert again.state == SETTLED and again.tx_hash is not None
    with led.session() as s:
        assert s.ledger.functions.lastEpoch().call() == 1
    assert chain_account(led, payer.address) == [100 * ONE - cost, cost]
    assert led.audit().clean


def test_attack_one_payer_that_cannot_be_collected_from_blocks_nobody(led: Ledger, payer: Any) -> None:
    cheat = funded(led)
    worker = new_account()
    b = led.billing(unverified_limit=ONE)
    honest = pay(b, payer, worker, "honest")
    pay(b, cheat, worker, "cheat-1")  # its first authorisation is checked: a good one
    garbage = "0x" + "ee" * 65  # then signatures the realm only checks when the exposure grows
    price = b.quote(cheat.address, "chat", None, {})
    for i in range(3):
        total = led.journal.committed(cheat.address) + price
        b.hold(cheat.address, f"cheat-{i + 2}", price, SimpleNamespace(total=total, signature=garbage))
        b.capture(f"cheat-{i + 2}", worker.address, "chat", {"tokens": 1000})
    charged = led.journal.charged(cheat.address)
    [epoch] = led.settle()
    assert epoch.state == SETTLED
    # the honest payer was collected from, the cheat up to the one total it validly signed ...
    assert chain_account(led, payer.address)[1] == honest
    assert chain_account(led, cheat.address)[1] == price
    # ... the rest came back to the cheat's balance from the realm's fee (covered by the owner
    # on this dev chain), and the worker is paid in full for every query
    [shortfall] = led.journal.kinds("shortfall")
    assert (shortfall.payer, shortfall.amount) == (cheat.address, charged - price)
    assert led.journal.charged(cheat.address) == price
    assert epoch.earnings_total == sum(r.amount - r.fee for r in led.journal.receipts())
    assert led.claim(worker)["amount"] == epoch.earnings_total
    assert led.audit().clean


def test_the_receipts_root_is_built_outside_the_write_lock(
    led: Ledger, payer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = led.billing()
    for i in range(3):
        pay(b, payer, new_account(), f"q{i}")
    blocked: list[str] = []
    real_root = merkle.root

    def root_while_someone_writes(leaves: list[bytes]) -> bytes:
        other = sqlite3.connect(led.journal.path, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")  # fails at once if the journal's write lock is held
            other.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            blocked.append(str(exc))
        finally:
            other.close()
        return real_root(leaves)

    monkeypatch.setattr(S.merkle, "root", root_while_someone_writes)
    hold(b, payer, "meanwhile", 10)
    assert led.settler.close_epoch(force=True) is not None
    assert blocked == []

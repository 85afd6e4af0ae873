"""Settlement: one settle per epoch, netted per payer and worker; chain outages lose nothing."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from ledger import ChainError, Ledger, LedgerConfig, RealmBilling
from ledger import accounts as A
from ledger.settlement import SETTLED, Settler, pack
from ledger.units import ONE
from tests.ledger.conftest import new_account


def pay(b: RealmBilling, user: Any, worker: Any, guid: str, tokens: int = 1000) -> int:
    b.hold(user.address, guid, b.quote(user.address, "chat", None, {}))
    return b.capture(guid, worker.address, "chat", {"tokens": tokens})


def chain_account(led: Ledger, address: str) -> list[int]:
    with led.session() as s:
        return list(s.ledger.functions.accountOf(address).call())


def test_an_epoch_nets_payers_and_workers_into_one_settle(led: Ledger, payer: Any) -> None:
    other = new_account()
    led.faucet(other)
    led.deposit(other, 10 * ONE)
    w1, w2 = new_account(), new_account()
    b = led.billing()
    costs = [pay(b, payer, w1, "q1"), pay(b, payer, w2, "q2"), pay(b, other, w1, "q3"), pay(b, payer, w1, "q4")]
    [epoch] = led.settle()
    assert (epoch.number, epoch.receipts, epoch.state) == (1, 4, SETTLED)
    assert epoch.debits == {payer.address: costs[0] + costs[1] + costs[3], other.address: costs[2]}
    fee = sum(c // 10 for c in costs)
    assert epoch.fee == fee
    assert sum(epoch.credits.values()) + fee == sum(costs)
    with led.session() as s:
        assert s.ledger.functions.lastEpoch().call() == 1
        assert s.ledger.functions.receiptsRoot(1).call() == epoch.root
        settled = s.ledger.events.Settled.get_logs(from_block=0)
        assert len(settled) == 1 and settled[0]["args"]["receipts"] == 4
    assert chain_account(led, payer.address) == [100 * ONE - costs[0] - costs[1] - costs[3], 0]
    assert chain_account(led, w1.address) == [0, led.journal.balance(A.worker(w1.address))]
    assert led.settle() == []  # nothing new: no empty epoch


def test_epochs_are_due_after_n_queries_or_n_seconds(led: Ledger, payer: Any) -> None:
    s = Settler(led.journal, epoch_seconds=3600, epoch_queries=3)
    b = led.billing()
    w = new_account()
    assert not s.due()
    pay(b, payer, w, "a")
    pay(b, payer, w, "b")
    assert not s.due()
    pay(b, payer, w, "c")
    assert s.due()
    timed = Settler(led.journal, epoch_seconds=5, epoch_queries=1000)
    assert not timed.due()
    assert timed.due(now=time.time() + 6)


def test_a_chain_outage_across_an_epoch_loses_nothing(config: LedgerConfig, led: Ledger, payer: Any) -> None:
    w = new_account()
    b = led.billing()
    before = [pay(b, payer, w, f"before-{i}") for i in range(3)]
    down = Ledger(replace(config, chain_rpc="http://127.0.0.1:9"))  # the node is unreachable
    down_billing = down.billing()
    with pytest.raises(ChainError) as info:
        down.settle()
    assert info.value.code == "chain_unreachable"
    # the epoch was closed before the chain was tried; it waits, and queries go on
    assert down.settler.pending() is not None and down.settler.pending().receipts == 3
    during = [pay(down_billing, payer, w, f"during-{i}") for i in range(2)]
    with pytest.raises(ChainError):
        down.settle()
    down.close()
    # the chain is back: the waiting epoch goes first, then what accrued meanwhile
    epochs = led.settle()
    assert [(e.number, e.receipts) for e in epochs] == [(1, 3), (2, 2)]
    assert sum(e.debited for e in epochs) == sum(before) + sum(during)
    assert chain_account(led, payer.address)[0] == 100 * ONE - sum(before) - sum(during)
    assert led.audit().clean


def test_an_epoch_whose_answer_was_lost_is_not_settled_twice(led: Ledger, payer: Any) -> None:
    w = new_account()
    cost = pay(led.billing(), payer, w, "q1")
    epoch = led.settler.close_epoch()
    assert epoch is not None
    with led.session() as s:  # the settle went through, but the realm crashed before recording it
        s.chain.transact(
            s.operator,
            s.ledger.functions.settle(1, epoch.root, 1, pack(epoch.debits), pack(epoch.credits), epoch.fee),
            what="settle",
        )
    [again] = led.settle()
    assert again.state == SETTLED and again.tx_hash is not None
    with led.session() as s:
        assert s.ledger.functions.lastEpoch().call() == 1
    assert chain_account(led, payer.address)[0] == 100 * ONE - cost
    assert led.audit().clean

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.billing import Billing
from broker.billing import InsufficientFunds as BrokerInsufficientFunds
from ledger import InsufficientFunds, Journal, PriceTable, RealmBilling
from ledger import accounts as A
from ledger.units import ONE

USER, WORKER = "0xUser", "0xWorker"


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "j.db")
    j.post("deposit", "t:0", ((A.ESCROW, -ONE), (A.user(USER), ONE)))
    return j


def test_realm_billing_is_the_brokers_billing(journal: Journal) -> None:
    assert isinstance(RealmBilling(journal), Billing)


def test_hold_then_capture_pays_worker_and_fee_and_returns_the_rest(journal: Journal) -> None:
    b = RealmBilling(journal)
    price = b.quote(USER, "chat", None, {"max_tokens": 100})
    b.hold(USER, "g1", price)
    assert journal.balance(A.hold(USER)) == price
    assert b.balance(USER) == ONE - price
    cost = b.capture("g1", WORKER, "chat", {"prompt_tokens": 10, "completion_tokens": 90})
    assert cost == ONE // 1000  # 100 tokens at 0.01 per 1k
    assert cost < price
    fee = cost // 10
    assert journal.balances() == {
        A.ESCROW: -ONE,
        A.user(USER): ONE - cost,
        A.worker(WORKER): cost - fee,
        A.FEE: fee,
    }
    assert journal.unbalanced() == []
    other = "0x" + "77" * 20
    assert b.earnings([WORKER, other]) == {WORKER: cost - fee, other: 0}  # what the TUI's workers pane shows


def test_capture_never_charges_more_than_the_hold(journal: Journal) -> None:
    b = RealmBilling(journal)
    b.hold(USER, "g1", 1000)
    assert b.capture("g1", WORKER, "chat", {"tokens": 10**12}) == 1000
    assert journal.balance(A.user(USER)) == ONE - 1000


def test_release_gives_the_hold_back(journal: Journal) -> None:
    b = RealmBilling(journal)
    b.hold(USER, "g1", 5000)
    b.release("g1")
    b.release("g1")  # twice is harmless
    assert journal.balance(A.user(USER)) == ONE
    assert journal.balance(A.hold(USER)) == 0
    assert b.capture("g1", WORKER, "chat", {"tokens": 1}) == 0  # released: nothing to charge


def test_insufficient_funds_raise_the_callers_class_and_change_nothing(journal: Journal) -> None:
    b = RealmBilling(journal, insufficient_funds=BrokerInsufficientFunds)
    b.hold(USER, "g1", ONE - 10)
    with pytest.raises(BrokerInsufficientFunds) as info:
        b.hold(USER, "g2", 11)
    assert (info.value.balance, info.value.price) == (10, 11)
    assert journal.open_holds() == {"g1": (USER, ONE - 10)}
    with pytest.raises(InsufficientFunds):
        RealmBilling(journal).hold("0xNobody", "g3", 1)


def test_a_resubmitted_guid_is_held_and_charged_once(journal: Journal) -> None:
    b = RealmBilling(journal)
    b.hold(USER, "g1", 1000)
    b.hold(USER, "g1", 1000)
    assert journal.balance(A.hold(USER)) == 1000
    assert b.capture("g1", WORKER, "echo", {}) == 1000
    assert b.capture("g1", WORKER, "echo", {}) == 1000  # the stored cost, not a second charge
    assert journal.balance(A.user(USER)) == ONE - 1000
    assert len(journal.receipts()) == 1


def test_queue_wait_is_never_charged(journal: Journal) -> None:
    b = RealmBilling(journal)
    usage = {"prompt_tokens": 40, "completion_tokens": 60}
    price = b.quote(USER, "chat", None, {})
    b.hold(USER, "quick", price)
    b.hold(USER, "waited", price)
    quick = b.capture("quick", WORKER, "chat", usage)
    time.sleep(0.3)  # "waited" sat in the queue
    assert b.capture("waited", WORKER, "chat", usage) == quick


def test_a_new_user_gets_the_welcome_hook_once(journal: Journal) -> None:
    granted: list[str] = []

    def welcome(user: str) -> None:
        granted.append(user)
        journal.post("deposit", f"grant:{user}", ((A.ESCROW, -500), (A.user(user), 500)))

    b = RealmBilling(journal, on_new_user=welcome)
    b.hold("0xNew", "g1", 300)
    with pytest.raises(InsufficientFunds):
        b.hold("0xNew", "g2", 300)  # not new any more: no second grant
    assert granted == ["0xNew"]


def test_a_zero_price_holds_nothing(journal: Journal) -> None:
    b = RealmBilling(journal, PriceTable().merged({"echo": {"unit": "query", "price": "0"}}))
    assert b.quote(USER, "echo", None, {}) == 0
    b.hold(USER, "g", 0)
    assert b.capture("g", WORKER, "echo", {}) == 0
    assert journal.last_txn_id() == 1

"""Leaving without the operator: a user starts an exit on chain, the realm's upkeep redeems what
it is owed inside the window, and after it the user takes the rest back, with no realm key."""

from __future__ import annotations

from typing import Any

import pytest

from ledger import Ledger, LedgerConfig
from ledger import accounts as A
from ledger.errors import ChainError, PaymentRefused
from ledger.units import ONE
from ledger.upkeep import Upkeep
from tests.ledger.conftest import authorise, new_account, pay

WINDOW = 30


@pytest.fixture
def config(home: Any) -> LedgerConfig:
    return LedgerConfig(home / "data", welcome_grant=0, exit_window_s=WINDOW, epoch_seconds=3600)


def test_a_user_leaves_without_the_operator(led: Ledger, config: LedgerConfig, payer: Any) -> None:
    worker = new_account()
    b = led.billing()
    spent = pay(b, payer, worker, "q1") + pay(b, payer, worker, "q2")  # not settled: no epoch is due
    started = led.exit(payer, "start")
    assert started["exit"] == "waiting" and started["seconds_left"] == WINDOW
    assert led.journal.exiting(payer.address)
    with pytest.raises(PaymentRefused) as info:  # the realm takes no new spending meanwhile
        b.hold(payer.address, "q3", 100, authorise(b, payer, 100))
    assert info.value.code == "exit_pending"
    with pytest.raises(ChainError) as early:
        led.exit(payer, "finish")
    assert "ExitNotReady" in early.value.message

    upkeep = Upkeep(config)  # the realm's last chance: its upkeep redeems what it is owed
    try:
        upkeep.step()
    finally:
        upkeep.close()
    with led.session() as s:
        assert s.ledger.functions.accountOf(payer.address).call() == [100 * ONE - spent, spent]
        s.chain.time_travel(WINDOW)

    done = led.exit(payer, "finish")  # the user's key only
    assert done["amount"] == 100 * ONE - spent and done["deposit"] == 0 and done["exit"] == "none"
    wallet = led.wallet(payer.address)
    assert wallet["available"] == 0 and not wallet["exiting"]
    assert wallet["chain"]["tokens"] == 1000 * ONE - spent
    led.settle()
    assert led.claim(worker)["amount"] == spent * 9 // 10  # the worker is paid for both queries
    assert led.audit().clean


def test_charges_the_realm_did_not_redeem_in_time_are_its_loss_not_the_workers(
    led: Ledger, payer: Any
) -> None:
    worker = new_account()
    b = led.billing()
    spent = pay(b, payer, worker, "q1")
    led.exit(payer, "start")
    with led.session() as s:  # the realm's upkeep never ran: the window passes unredeemed
        s.chain.time_travel(WINDOW)
    assert led.exit(payer, "finish")["amount"] == 100 * ONE  # the user leaves with everything
    [shortfall] = led.journal.kinds("shortfall")
    assert (shortfall.payer, shortfall.amount) == (payer.address, spent)
    assert led.journal.balance(A.FEE) < 0  # the realm owes the worker's part ...
    [epoch] = led.settle()  # ... and covers it (the dev chain's owner mints) before posting earnings
    assert epoch.earnings_total == spent * 9 // 10
    assert led.claim(worker)["amount"] == spent * 9 // 10
    assert led.journal.balance(A.FEE) == 0
    assert led.audit().clean


def test_an_exit_can_be_cancelled_and_spending_resumes(led: Ledger, payer: Any) -> None:
    b = led.billing()
    led.exit(payer, "start")
    with pytest.raises(ChainError) as info:
        led.exit(payer, "start")
    assert "ExitPending" in info.value.message
    assert led.exit(payer, "cancel")["exit"] == "none"
    assert not led.journal.exiting(payer.address)
    pay(b, payer, new_account(), "after")
    assert led.exit(payer, "status")["exit"] == "none"


def test_an_exit_needs_no_realm_journal_or_key(led: Ledger, payer: Any) -> None:
    """The user side works from the chain and the contracts alone (another machine, the realm gone)."""
    from ledger import wallet as W

    before = led.journal.last_txn_id()
    with led.session() as s:
        W.start_exit(s, payer)
        s.chain.time_travel(WINDOW)
        out = W.finish_exit(s, payer)
    assert out["amount"] == 100 * ONE
    assert led.journal.last_txn_id() == before  # the realm took no part ...
    led.sync()
    assert [t.kind for t in led.journal.history(payer.address, limit=2)] == ["exit", "exit_started"]
    assert led.audit().clean  # ... and books it when it next looks

"""Attempted double spends and forged withdrawals are refused, and the books stay clean."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger import ChainError, InsufficientFunds, Ledger, LedgerError
from ledger import accounts as A
from ledger.service import sign_voucher
from ledger.units import ONE
from tests.ledger.conftest import new_account


def test_the_same_deposit_cannot_pay_twice(led: Ledger, payer: Any) -> None:
    b = led.billing()
    b.hold(payer.address, "big-1", 80 * ONE)
    with pytest.raises(InsufficientFunds):
        b.hold(payer.address, "big-2", 80 * ONE)
    # nor can a refund take what a running query holds
    with pytest.raises(LedgerError) as info:
        led.refund(payer, 30 * ONE)
    assert info.value.code == "insufficient_funds"
    cost = b.capture("big-1", new_account().address, "echo", {})
    assert cost == ONE // 100  # one query at the default price; the rest of the hold came back
    led.refund(payer, 20 * ONE)
    assert led.journal.balance(A.user(payer.address)) == 80 * ONE - cost
    assert led.audit().clean


def test_a_worker_cannot_withdraw_unsettled_or_someone_elses_earnings(led: Ledger, payer: Any) -> None:
    worker, thief = new_account(), new_account()
    b = led.billing()
    b.hold(payer.address, "q", ONE)
    b.capture("q", worker.address, "echo", {})
    with pytest.raises(LedgerError) as info:
        led.withdraw(worker, ONE)  # earned, but not settled yet
    assert info.value.code == "insufficient_earnings"
    led.settle()
    before = led.journal.last_txn_id()
    with pytest.raises(LedgerError):
        led.withdraw(thief, ONE // 2)
    with pytest.raises(LedgerError) as info:
        led.withdraw(worker, ONE)  # more than the 90 % the worker earned
    assert "more than" in info.value.message
    with led.session() as s:  # straight to the contract, bypassing the CLI's checks
        with pytest.raises(ChainError) as chain_info:
            s.chain.transact(thief, s.ledger.functions.withdraw(1), what="a forged withdrawal")
        assert "InsufficientEarnings" in chain_info.value.message
        with pytest.raises(ChainError) as chain_info:
            s.chain.transact(
                thief,
                s.ledger.functions.settle(1, b"\x00" * 32, 0, [], [(ONE << 160) | int(thief.address, 16)], 0),
                what="a forged settlement",
            )
        assert "NotOperator" in chain_info.value.message
    assert led.journal.history(thief.address) == []
    assert led.journal.count("withdraw") == 0 and led.journal.last_txn_id() == before
    led.withdraw(worker)
    assert led.journal.balance(A.worker(worker.address)) == 0
    assert led.audit().clean


def test_a_forged_or_replayed_refund_voucher_is_refused(led: Ledger, payer: Any) -> None:
    led.refund(payer, ONE)
    mallory = new_account()
    with led.session() as s:
        deadline = s.chain.timestamp() + 600
        # signed by someone who is not the operator
        forged = sign_voucher(mallory, s.chain.chain_id, s.deployment.ledger, payer.address, 50 * ONE, 1, deadline)
        with pytest.raises(ChainError) as info:
            s.chain.transact(payer, s.ledger.functions.refund(50 * ONE, deadline, forged), what="refund")
        assert "BadVoucher" in info.value.message
        # the operator's voucher for nonce 0 was used already
        old = sign_voucher(s.operator, s.chain.chain_id, s.deployment.ledger, payer.address, ONE, 0, deadline)
        with pytest.raises(ChainError) as info:
            s.chain.transact(payer, s.ledger.functions.refund(ONE, deadline, old), what="refund")
        assert "BadVoucher" in info.value.message
    assert led.journal.balance(A.user(payer.address)) == 99 * ONE
    assert led.audit().clean


def test_an_unredeemed_voucher_expires_back_to_the_balance(led: Ledger, payer: Any) -> None:
    with led.session() as s:
        nonce = s.ledger.functions.refundNonce(payer.address).call()
        deadline = s.chain.timestamp() - 1  # already past: it can never be redeemed
    led.journal.post(
        "voucher",
        f"{payer.address}:{nonce}",
        ((A.user(payer.address), -5 * ONE), (A.refund(payer.address), 5 * ONE)),
        payer=payer.address,
        amount=5 * ONE,
        memo=json.dumps({"nonce": nonce, "deadline": deadline}),
    )
    assert led.journal.balance(A.user(payer.address)) == 95 * ONE
    with led.session() as s:
        led._expire_vouchers(s)
    assert led.journal.balance(A.user(payer.address)) == 100 * ONE
    assert led.journal.balance(A.refund(payer.address)) == 0
    assert led.audit().clean

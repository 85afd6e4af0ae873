"""Attempted double spends, forged claims, settlements and vouchers are refused, and the books stay clean."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger import ChainError, InsufficientFunds, Ledger, LedgerError
from ledger import accounts as A
from ledger.service import VOUCHER_TTL_S, sign_voucher
from ledger.units import ONE
from tests.ledger.conftest import hold, new_account, pay


def test_the_same_deposit_cannot_pay_twice(led: Ledger, payer: Any) -> None:
    b = led.billing()
    hold(b, payer, "big-1", 80 * ONE)
    with pytest.raises(InsufficientFunds):
        hold(b, payer, "big-2", 80 * ONE)
    # nor can a refund take what a running query holds
    with pytest.raises(LedgerError) as info:
        led.refund(payer, 30 * ONE)
    assert info.value.code == "insufficient_funds"
    cost = b.capture("big-1", new_account().address, "echo", {})
    assert cost == ONE // 100  # one query at the default price; the rest of the hold came back
    led.refund(payer, 20 * ONE)
    assert led.journal.balance(A.user(payer.address)) == 80 * ONE - cost
    assert led.audit().clean


def test_a_worker_cannot_claim_unsettled_or_someone_elses_earnings(led: Ledger, payer: Any) -> None:
    worker, thief = new_account(), new_account()
    pay(led.billing(), payer, worker, "q")
    with pytest.raises(LedgerError) as info:
        led.claim(worker)  # earned, but not settled yet
    assert info.value.code == "not_settled"
    led.settle()
    before = led.journal.last_txn_id()
    with pytest.raises(LedgerError) as info:
        led.claim(thief)
    assert info.value.code == "nothing_to_claim"
    proof = led.proof(worker.address)
    path = [bytes.fromhex(p[2:]) for p in proof["proof"]]
    with led.session() as s:  # straight to the contract, bypassing the CLI's checks
        for who, amount in ((thief.address, proof["cumulative"]), (worker.address, proof["cumulative"] + 1)):
            with pytest.raises(ChainError) as chain_info:
                s.chain.transact(thief, s.ledger.functions.claim(who, amount, path), what="a forged claim")
            assert "BadProof" in chain_info.value.message
        with pytest.raises(ChainError) as chain_info:
            s.chain.transact(
                thief,
                s.ledger.functions.settle(2, b"\1" * 32, 1, b"\2" * 32, 1, b"\3" * 32),
                what="a forged settlement",
            )
        assert "NotSettler" in chain_info.value.message
    assert led.journal.history(thief.address) == []
    assert led.journal.last_txn_id() == before
    out = led.claim(worker)
    assert out["amount"] == proof["cumulative"]
    with pytest.raises(LedgerError) as info:
        led.claim(worker)  # twice
    assert info.value.code == "nothing_to_claim"
    assert led.journal.balance(A.worker(worker.address)) == 0
    assert led.audit().clean


def test_attack_the_operator_cannot_take_a_deposit_without_the_payers_signature(led: Ledger, payer: Any) -> None:
    from ledger import authorisation as auth

    with led.session() as s:
        terms = s.deployment.terms()
        for forger in (led.settler_key, led.owner_key, led.voucher_key):
            r, vs = auth.compact(auth.sign(forger.key, terms, payer.address, 100 * ONE))
            s.chain.transact(
                led.settler_key,
                s.ledger.functions.redeem([(payer.address, 100 * ONE, 100 * ONE, r, vs)]),
                what="a redemption the payer never signed",
            )
        assert s.ledger.functions.accountOf(payer.address).call() == [100 * ONE, 0]
    assert led.audit().clean


def test_a_forged_or_replayed_refund_voucher_is_refused(led: Ledger, payer: Any) -> None:
    led.refund(payer, ONE)
    with led.session() as s:
        deadline = s.chain.timestamp() + 600
        # signed by keys that are not the voucher signer: the settler, the owner, a stranger
        for signer in (led.settler_key, led.owner_key, new_account()):
            forged = sign_voucher(signer, s.chain.chain_id, s.deployment.ledger, payer.address, 50 * ONE, 1, deadline)
            with pytest.raises(ChainError) as info:
                s.chain.transact(payer, s.ledger.functions.refund(50 * ONE, deadline, forged), what="refund")
            assert "BadVoucher" in info.value.message
        # the voucher for nonce 0 was used already
        old = sign_voucher(led.voucher_key, s.chain.chain_id, s.deployment.ledger, payer.address, ONE, 0, deadline)
        with pytest.raises(ChainError) as info:
            s.chain.transact(payer, s.ledger.functions.refund(ONE, deadline, old), what="refund")
        assert "BadVoucher" in info.value.message
    assert led.journal.balance(A.user(payer.address)) == 99 * ONE
    assert led.audit().clean


def test_an_expired_voucher_does_not_lock_the_user_out_of_refunds(led: Ledger, payer: Any) -> None:
    # a voucher the user never redeemed (its transaction was lost, say) ...
    with led.session() as s:
        deadline = s.chain.timestamp() + VOUCHER_TTL_S
    user = payer.address
    led.journal.post(
        "voucher",
        f"{user}:0:{deadline}",
        ((A.user(user), -5 * ONE), (A.refund(user), 5 * ONE)),
        payer=user,
        amount=5 * ONE,
        memo=json.dumps({"nonce": 0, "deadline": deadline}),
    )
    with pytest.raises(LedgerError) as info:
        led.refund(payer, ONE)  # still redeemable: no second voucher meanwhile
    assert info.value.code == "voucher_outstanding"
    with led.session() as s:
        s.chain.time_travel(VOUCHER_TTL_S + 1)
    # ... expires: its reservation comes back, and the next refund works (same on-chain nonce)
    out = led.refund(payer, 7 * ONE)
    assert out["amount"] == 7 * ONE
    assert led.journal.balance(A.user(user)) == 93 * ONE
    assert led.journal.balance(A.refund(user)) == 0
    with pytest.raises(LedgerError):
        led.refund(payer, 200 * ONE)
    out = led.refund(payer, ONE)  # and again: each redeemed voucher is closed, not outstanding
    assert out["amount"] == ONE
    assert led.audit().clean


def test_an_open_voucher_is_handed_out_again_and_redeemed_once(led: Ledger, payer: Any) -> None:
    from ledger import wallet as W

    user = payer.address
    first = led.refund_voucher(user, 4 * ONE)  # the user's transaction is lost, say
    assert led.refund_voucher(user) == first  # asked again: the same voucher, not a second reservation
    assert led.refund_voucher(user, 4 * ONE) == first
    with pytest.raises(LedgerError) as info:
        led.refund_voucher(user, ONE)  # another amount waits for this one
    assert info.value.code == "voucher_outstanding" and "without an amount" in info.value.hint
    assert led.journal.balance(A.refund(user)) == 4 * ONE
    with led.session() as s:
        W.refund(s, payer, first)
        with pytest.raises(ChainError) as chain_info:
            W.refund(s, payer, first)  # its nonce is used
        assert "BadVoucher" in chain_info.value.message
    led.sync()
    assert led.journal.balance(A.user(user)) == 96 * ONE and led.journal.balance(A.refund(user)) == 0
    assert led.refund_voucher(user, ONE)["nonce"] == first["nonce"] + 1  # closed, not outstanding
    assert led.audit().clean

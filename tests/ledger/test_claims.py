"""Workers pull their earnings: each settled epoch posts one root of cumulative earnings,
a worker claims the difference to what it claimed, with a proof the realm hands out."""

from __future__ import annotations

from typing import Any

from ledger import Ledger, merkle
from ledger.units import ONE
from tests.ledger.conftest import new_account, pay


def test_a_worker_claims_what_it_earned_over_epochs_only_once(led: Ledger, payer: Any) -> None:
    w1, w2 = new_account(), new_account()
    b = led.billing()
    first = pay(b, payer, w1, "a") + pay(b, payer, w1, "b")
    pay(b, payer, w2, "c")
    led.settle()
    view = led.earnings(w1.address)
    assert view["claimable"] == first * 9 // 10 and view["awaiting_settlement"] == 0
    out = led.claim(w1)
    assert (out["amount"], out["epoch"]) == (first * 9 // 10, 1)
    second = pay(b, payer, w1, "d")
    assert led.earnings(w1.address)["awaiting_settlement"] == second * 9 // 10
    led.settle()
    out = led.claim(w1)
    assert out["amount"] == second * 9 // 10  # the difference, not the whole cumulative again
    assert out["cumulative"] == (first + second) * 9 // 10
    view = led.earnings(w1.address)
    assert view["claimable"] == 0 and view["unclaimed"] == 0 and view["tokens"] == out["cumulative"]
    # w2 never claimed: its earnings of epoch 1 are still in epoch 2's root
    assert led.claim(w2)["amount"] > 0
    assert led.audit().clean


def test_the_realms_proof_verifies_locally_and_on_chain(led: Ledger, payer: Any) -> None:
    workers = [new_account() for _ in range(5)]
    b = led.billing()
    for i, w in enumerate(workers):
        pay(b, payer, w, f"q{i}")
    led.settle()
    for w in workers:
        proof = led.proof(w.address)
        leaf = merkle.earnings_leaf(w.address, proof["cumulative"])
        path = [bytes.fromhex(p[2:]) for p in proof["proof"]]
        assert merkle.verify(leaf, path, bytes.fromhex(proof["root"][2:]))
    stranger = led.proof(new_account().address)
    assert stranger["cumulative"] == 0 and stranger["proof"] == []


def test_earning_a_little_every_epoch_costs_a_worker_nothing_until_it_claims(led: Ledger, payer: Any) -> None:
    worker = new_account()
    b = led.billing()
    for epoch in range(3):
        pay(b, payer, worker, f"q{epoch}")
        led.settle()
    with led.session() as s:
        assert s.chain.eth_balance(worker.address) == 0  # it sent no transaction, paid no gas
    assert led.claim(worker)["amount"] == led.proof(worker.address)["cumulative"]
    assert led.wallet(worker.address)["chain"]["tokens"] > ONE // 100

"""Deposits on chain reach the journal exactly once, after N confirmations, across restarts."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ledger import Ledger, LedgerConfig, watcher
from ledger import accounts as A
from ledger.units import ONE
from tests.ledger.conftest import new_account, pay


def deposit_on_chain(led: Ledger, user: Any, amount: int) -> None:
    """A deposit made straight on chain (another wallet), not through `mtor wallet deposit`."""
    with led.session() as s:
        s.chain.transact(user, s.token.functions.faucet(), what="faucet")
        s.chain.transact(user, s.token.functions.approve(s.deployment.ledger, amount), what="approve")
        s.chain.transact(user, s.ledger.functions.deposit(amount), what="deposit")


def test_a_deposit_is_credited_once_even_when_scanned_again(led: Ledger) -> None:
    user = new_account()
    deposit_on_chain(led, user, 7 * ONE)
    first = led.sync()
    assert [(c["kind"], c["address"], c["amount"]) for c in first.credited] == [("deposit", user.address, 7 * ONE)]
    assert led.sync().credited == []
    # forget the cursor: every block is read again, nothing is posted twice
    led.journal.set_meta(watcher.CURSOR_KEY, "0")
    assert led.sync().credited == []
    assert led.journal.balance(A.user(user.address)) == 7 * ONE


def test_exactly_once_across_a_restart_and_between_processes(config: LedgerConfig) -> None:
    user = new_account()
    with Ledger(config) as led:
        deposit_on_chain(led, user, 3 * ONE)
    # two realms over the same data dir (the realm and a CLI command) both sync
    with Ledger(config) as a, Ledger(config) as b:
        a.sync()
        b.journal.set_meta(watcher.CURSOR_KEY, "0")
        b.sync()
        assert a.journal.balance(A.user(user.address)) == 3 * ONE
        assert b.journal.balance(A.user(user.address)) == 3 * ONE
    with Ledger(config) as again:
        again.sync()
        assert again.journal.balance(A.user(user.address)) == 3 * ONE
        assert [t.kind for t in again.journal.history(user.address)] == ["deposit"]


def test_a_deposit_waits_for_its_confirmations(config: LedgerConfig) -> None:
    user = new_account()
    with Ledger(replace(config, confirmations=3)) as led:
        deposit_on_chain(led, user, 2 * ONE)
        assert led.sync().credited == []
        assert led.journal.balance(A.user(user.address)) == 0
        with led.session() as s:
            s.chain.mine(2)
        assert led.sync().credited == []
        with led.session() as s:
            s.chain.mine(1)
        assert len(led.sync().credited) == 1
        assert led.journal.balance(A.user(user.address)) == 2 * ONE


def test_an_event_it_cannot_book_is_recorded_and_skipped_not_fatal(led: Ledger, payer: Any) -> None:
    worker = new_account()
    pay(led.billing(), payer, worker, "q1")
    led.settle()
    earned = led.journal.balance(A.worker(worker.address))
    # the journal no longer holds the worker's earnings (a broken journal), and the
    # worker claims on chain, then someone deposits: both in blocks the watcher has not read
    led.journal.post("correction", "x", ((A.worker(worker.address), -earned), (A.FEE, earned)))
    proof = led.proof(worker.address)
    with led.session() as s:
        s.chain.transact(
            worker,
            s.ledger.functions.claim(worker.address, proof["cumulative"], [bytes.fromhex(p[2:]) for p in proof["proof"]]),
            what="claim",
        )
    user = new_account()
    deposit_on_chain(led, user, 2 * ONE)
    report = led.sync()
    assert [u["event"] for u in report.unbooked] == ["Claimed"]
    assert [c["kind"] for c in report.credited] == ["deposit"]  # the watcher went on
    assert led.journal.balance(A.user(user.address)) == 2 * ONE
    [recorded] = led.journal.unbooked()
    assert recorded["event"] == "Claimed" and "worker:" in recorded["detail"]
    assert led.sync().unbooked == []  # read once: the cursor moved past it
    report = led.audit()
    assert ("unbooked", recorded["ref"]) in {(f.check, f.subject) for f in report.findings}

"""Pay per query on the journal: holds covered by the payer's signed authorisation,
captures clamped to 0 <= cost <= hold, releases, welcome grants, refusals."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from broker.billing import Billing
from broker.billing import InsufficientFunds as BrokerInsufficientFunds
from ledger import InsufficientFunds, Journal, PriceTable, RealmBilling, open_journal
from ledger import accounts as A
from ledger import authorisation as auth
from ledger.errors import PaymentRefused
from ledger.units import ONE
from tests.ledger.conftest import authorise, hold, new_account

TERMS = auth.Terms(31337, "0x" + "5f" * 20)
WORKER = "0x" + "77" * 20


@pytest.fixture
def user() -> Any:
    return new_account()


@pytest.fixture
def journal(tmp_path: Path, user: Any) -> Journal:
    j = open_journal(tmp_path / "j.db")
    j.post("deposit", "t:0", ((A.ESCROW, -ONE), (A.user(user.address), ONE)))
    return j


def billing(journal: Journal, **kwargs: Any) -> RealmBilling:
    return RealmBilling(journal, kwargs.pop("prices", None), terms=lambda: TERMS, **kwargs)


def test_realm_billing_is_the_brokers_billing(journal: Journal) -> None:
    assert isinstance(billing(journal), Billing)


def test_hold_then_capture_pays_worker_and_fee_and_returns_the_rest(journal: Journal, user: Any) -> None:
    b = billing(journal)
    price = b.quote(user.address, "chat", None, {"max_tokens": 100})
    hold(b, user, "g1", price)
    assert journal.balance(A.hold(user.address)) == price
    assert b.balance(user.address) == ONE - price
    cost = b.capture("g1", WORKER, "chat", {"prompt_tokens": 10, "completion_tokens": 90})
    assert cost == ONE // 1000  # 100 tokens at 0.01 per 1k
    fee = cost // 10
    assert journal.balances() == {
        A.ESCROW: -ONE,
        A.user(user.address): ONE - cost,
        A.worker(WORKER): cost - fee,
        A.FEE: fee,
    }
    assert journal.committed(user.address) == journal.charged(user.address) == cost
    other = "0x" + "78" * 20
    assert b.earnings([WORKER, other]) == {WORKER: cost - fee, other: 0}  # what the TUI's workers pane shows


def test_the_hold_carries_the_authorisation_that_covered_it(journal: Journal, user: Any) -> None:
    b = billing(journal)
    signed = authorise(b, user, 5000)
    b.hold(user.address, "g1", 5000, signed)
    [row] = journal.kinds("hold")
    assert row.auth == auth.encode(signed.total, signed.signature)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -2000},
        {"prompt_tokens": -2000, "completion_tokens": -10**30},
        {"tokens": -5},
        {"prompt_tokens": float("-inf")},
    ],
)
def test_attack_a_worker_reporting_negative_usage_cannot_mint_money(
    journal: Journal, user: Any, usage: dict[str, Any]
) -> None:
    b = billing(journal)
    hold(b, user, "g1", 10_000)
    assert b.capture("g1", WORKER, "chat", usage) == 0
    assert journal.balance(A.user(user.address)) == ONE  # not credited
    assert journal.balance(A.worker(WORKER)) == 0 and journal.balance(A.FEE) == 0  # not debited
    assert journal.open_holds() == {}
    assert journal.unbalanced() == []


def test_capture_never_charges_more_than_the_hold(journal: Journal, user: Any) -> None:
    b = billing(journal)
    hold(b, user, "g1", 1000)
    assert b.capture("g1", WORKER, "chat", {"tokens": 10**12}) == 1000
    assert journal.balance(A.user(user.address)) == ONE - 1000


def test_a_capture_that_cannot_be_written_never_raises_into_the_broker(journal: Journal, user: Any) -> None:
    b = billing(journal)
    hold(b, user, "g1", 1000)
    journal._conn.close()  # the database goes away under the broker
    assert b.capture("g1", WORKER, "chat", {"tokens": 1}) == 0
    b.release("g1")
    assert b.failures == 2


def test_release_gives_the_hold_back(journal: Journal, user: Any) -> None:
    b = billing(journal)
    hold(b, user, "g1", 5000)
    b.release("g1")
    b.release("g1")  # twice is harmless
    assert journal.balance(A.user(user.address)) == ONE
    assert journal.balance(A.hold(user.address)) == 0
    assert b.capture("g1", WORKER, "chat", {"tokens": 1}) == 0  # released: nothing to charge


def test_insufficient_funds_raise_the_callers_class_and_change_nothing(journal: Journal, user: Any) -> None:
    b = billing(journal, insufficient_funds=BrokerInsufficientFunds)
    hold(b, user, "g1", ONE - 10)
    with pytest.raises(BrokerInsufficientFunds) as info:
        hold(b, user, "g2", 11)
    assert (info.value.balance, info.value.price) == (10, 11)
    assert journal.open_holds() == {"g1": (user.address, ONE - 10)}
    with pytest.raises(InsufficientFunds):
        hold(billing(journal), new_account(), "g3", 1)


def test_a_resubmitted_guid_is_held_and_charged_once(journal: Journal, user: Any) -> None:
    b = billing(journal)
    hold(b, user, "g1", 1000)
    hold(b, user, "g1", 1000)
    assert journal.balance(A.hold(user.address)) == 1000
    assert b.capture("g1", WORKER, "echo", {}) == 1000
    assert b.capture("g1", WORKER, "echo", {}) == 1000  # the stored cost, not a second charge
    assert journal.balance(A.user(user.address)) == ONE - 1000
    assert len(journal.receipts()) == 1


def test_queue_wait_is_never_charged(journal: Journal, user: Any) -> None:
    b = billing(journal)
    usage = {"prompt_tokens": 40, "completion_tokens": 60}
    price = b.quote(user.address, "chat", None, {})
    hold(b, user, "quick", price)
    hold(b, user, "waited", price)
    quick = b.capture("quick", WORKER, "chat", usage)
    time.sleep(0.3)  # "waited" sat in the queue
    assert b.capture("waited", WORKER, "chat", usage) == quick


def test_a_zero_price_holds_nothing_and_needs_no_authorisation(journal: Journal, user: Any) -> None:
    b = billing(journal, prices=PriceTable().merged({"echo": {"unit": "query", "price": "0"}}))
    assert b.quote(user.address, "echo", None, {}) == 0
    b.hold(user.address, "g", 0, None)
    assert b.capture("g", WORKER, "echo", {}) == 0
    assert journal.last_txn_id() == 1


def refused(b: RealmBilling, user: Any, guid: str, amount: int, authorisation: Any) -> PaymentRefused:
    with pytest.raises(PaymentRefused) as info:
        b.hold(user.address, guid, amount, authorisation)
    return info.value


def test_a_hold_without_an_authorisation_covering_everything_committed_is_refused(
    journal: Journal, user: Any
) -> None:
    b = billing(journal)
    hold(b, user, "g1", 700)  # committed: 700
    err = refused(b, user, "g2", 500, None)
    assert err.code == "bad_authorisation"
    assert err.detail == {"needed": 1200, "committed": 700, "chain_id": 31337, "contract": TERMS.contract}
    too_low = authorise(b, user, 499)
    assert refused(b, user, "g2", 500, too_low).code == "bad_authorisation"
    assert journal.open_holds() == {"g1": (user.address, 700)}
    b.hold(user.address, "g2", 500, authorise(b, user, 500))  # exactly enough
    assert journal.committed(user.address) == 1200


@pytest.mark.parametrize("forgery", ["someone_else", "other_realm", "other_chain", "garbage", "short"])
def test_attack_a_forged_authorisation_is_refused(journal: Journal, user: Any, forgery: str) -> None:
    b = billing(journal)
    total = 1000
    if forgery == "someone_else":
        signature = auth.sign(new_account().key, TERMS, user.address, total)
    elif forgery == "other_realm":
        signature = auth.sign(user.key, auth.Terms(31337, "0x" + "99" * 20), user.address, total)
    elif forgery == "other_chain":
        signature = auth.sign(user.key, auth.Terms(1, TERMS.contract), user.address, total)
    elif forgery == "garbage":
        signature = "0x" + "ab" * 65
    else:
        signature = "0x1234"
    err = refused(b, user, "g1", total, SimpleNamespace(total=total, signature=signature))
    assert err.code == "bad_authorisation" and "not signed by" in err.message
    assert journal.open_holds() == {}


def test_signatures_are_checked_lazily_within_a_bounded_exposure(journal: Journal, user: Any) -> None:
    b = billing(journal, unverified_limit=3000)
    hold(b, user, "first", 1000)  # a payer's first authorisation is always checked
    garbage = "0x" + "cd" * 65
    accepted = 0
    for i in range(10):
        total = journal.committed(user.address) + 1000
        try:
            b.hold(user.address, f"g{i}", 1000, SimpleNamespace(total=total, signature=garbage))
            accepted += 1
        except PaymentRefused as err:
            assert err.code == "bad_authorisation"
    assert accepted == 3  # at most unverified_limit presented without a check
    hold(b, user, "honest", 1000)  # a valid one is accepted again (and checked: over the limit)


def test_an_exit_in_progress_stops_new_spending(journal: Journal, user: Any) -> None:
    b = billing(journal)
    journal.post("exit_started", "0xtx:0", (), payer=user.address)
    err = refused(b, user, "g1", 100, authorise(b, user, 100))
    assert err.code == "exit_pending"
    journal.post("exit_cancelled", "0xtx:1", (), payer=user.address)
    hold(b, user, "g1", 100)


def test_a_new_user_gets_the_welcome_grant_in_the_journal_once(journal: Journal) -> None:
    woken: list[str] = []
    b = billing(journal, welcome_grant=500, on_activity=lambda: woken.append("grant"))
    newcomer = new_account()
    hold(b, newcomer, "g1", 300)
    assert journal.balance(A.user(newcomer.address)) == 200
    assert journal.balance(A.GRANTS) == -500  # promised, to be escrowed on chain by the upkeep
    with pytest.raises(InsufficientFunds):
        hold(b, newcomer, "g2", 300)  # not new any more: no second grant
    assert woken == ["grant"]
    assert journal.count("welcome") == 1


def test_terms_tell_a_client_what_to_sign_for(journal: Journal, user: Any) -> None:
    b = billing(journal)
    hold(b, user, "g1", 700)
    terms = b.terms(user.address)
    assert terms is not None
    assert (terms["chain_id"], terms["contract"], terms["committed"]) == (31337, TERMS.contract, 700)
    assert terms["quotes"]["imagine"] == ONE // 2 and terms["quotes"]["default"] == ONE // 100
    assert RealmBilling(journal, terms=lambda: None).terms(user.address) is None


def signed(user: Any, total: int, signer: Any = None) -> SimpleNamespace:
    return SimpleNamespace(total=total, signature=auth.sign((signer or user).key, TERMS, user.address, total))


def test_every_authorisation_must_cover_what_the_payers_api_keys_may_still_spend(journal: Journal, user: Any) -> None:
    b = billing(journal)
    reserve = {user.address: 7000}
    b.set_reserved(lambda who: reserve.get(who, 0))
    terms = b.terms(user.address)
    assert terms is not None and terms["committed"] == 7000  # what the SDK signs on top of
    with pytest.raises(PaymentRefused) as refused:
        b.hold(user.address, "g1", 500, signed(user, 500))  # covers the query, not the keys' reserve
    assert refused.value.detail["needed"] == 7500 and refused.value.detail["committed"] == 7000
    b.hold(user.address, "g1", 500, signed(user, 7500))
    with pytest.raises(PaymentRefused):
        b.authorise(user.address, signed(user, 7500 + 2999), 3000)  # a new key of 3000: 10500 in all
    b.authorise(user.address, signed(user, 10500), 3000)
    assert b.standing(user.address) == (10500, signed(user, 10500).signature)


def test_a_standing_authorisation_is_the_highest_valid_one_even_after_a_restart(
    journal: Journal, user: Any, tmp_path: Path
) -> None:
    b = billing(journal)
    assert b.standing(user.address) is None
    b.hold(user.address, "g1", 100, signed(user, 100))
    b.hold(user.address, "g2", 100, signed(user, 200))  # within the lazy bound: not checked at once
    assert b.standing(user.address) == (200, signed(user, 200).signature)
    journal.commit()
    forged = signed(user, 10**20, signer=new_account())
    journal.post_hold("g3", user.address, 100, auth.encode(forged.total, forged.signature))  # a row nobody signed
    again = billing(journal)  # a new broker process on the same journal
    assert again.standing(user.address) == (200, signed(user, 200).signature)
    with pytest.raises(PaymentRefused, match="not signed by"):
        again.authorise(user.address, forged, 0)


def test_a_peer_realm_holds_on_its_credit_line_without_an_authorisation(journal: Journal, user: Any) -> None:
    peer = new_account().address
    b = billing(journal, refused=PaymentRefused)
    price = b.quote(peer, "echo", None, {})
    b.credit(peer, 3 * price // 2)
    b.hold(peer, "p1", price, None)  # no Spend authorisation: a pinned peer pays on credit
    assert journal.balance(A.realm(peer)) == -(3 * price // 2)
    assert journal.balance(A.user(peer)) == price // 2
    assert b.capture("p1", WORKER, "echo", {}) == price
    assert journal.peers_owe() == {peer: price}
    with pytest.raises(PaymentRefused) as over:
        b.hold(peer, "p2", price, None)
    assert over.value.code == "peer_credit_exceeded"
    assert journal.open_holds() == {}
    # A lower limit takes back only credit the peer has not used; a higher one extends it.
    b.credit(peer, 0)
    b.hold(peer, "p3", 0, None)
    b.credit(peer, 2 * price)
    b.hold(peer, "p4", price, None)
    assert journal.balance(A.realm(peer)) == -2 * price
    assert journal.balance(A.user(peer)) == 0
    # An ordinary payer still needs its signed authorisation.
    assert refused(b, user, "u1", price, None).code == "bad_authorisation"

"""Audit: clean books agree with the chain; a tampered journal is caught; receipts are provable."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from ledger import Ledger, LedgerError
from ledger import accounts as A
from ledger.units import ONE
from tests.ledger.conftest import new_account


@pytest.fixture
def books(led: Ledger, payer: Any) -> dict[str, Any]:
    """Five paid queries, settled; one more paid after the settlement; one worker withdrew."""
    w1, w2 = new_account(), new_account()
    b = led.billing()
    for i in range(5):
        guid = f"q{i}"
        b.hold(payer.address, guid, 10**16)
        b.capture(guid, (w1 if i % 2 else w2).address, "chat", {"tokens": 100 * (i + 1)})
    led.settle()
    led.withdraw(w2)
    b.hold(payer.address, "late", 10**16)
    b.capture("late", w1.address, "chat", {"tokens": 50})
    b.hold(payer.address, "running", 10**16)
    return {"payer": payer, "w1": w1, "w2": w2}


def test_clean_books_agree_with_the_chain(led: Ledger, books: dict[str, Any]) -> None:
    report = led.audit()
    assert report.clean, report.as_dict()
    assert report.checked["receipts"] == 6
    assert report.checked["epochs_settled"] == 1


def test_every_receipt_of_an_epoch_is_provable(led: Ledger, books: dict[str, Any]) -> None:
    for i in range(5):
        proof = led.audit(receipt=f"q{i}").proof
        assert proof is not None
        assert proof["valid_locally"] and proof["valid_on_chain"]
        assert proof["epoch"] == 1 and proof["payer"] == books["payer"].address
    with pytest.raises(LedgerError) as info:
        led.audit(receipt="late")
    assert info.value.code == "not_settled"
    with pytest.raises(LedgerError) as info:
        led.audit(receipt="never-asked")
    assert info.value.code == "unknown_receipt"


def _tamper(led: Ledger, sql: str, *args: Any) -> None:
    raw = sqlite3.connect(led.journal.path)
    raw.execute(sql, args)
    raw.commit()
    raw.close()


def test_a_forged_deposit_entry_is_caught(led: Ledger, books: dict[str, Any]) -> None:
    payer = books["payer"].address
    _tamper(
        led,
        "UPDATE txns SET entries = json_replace(entries, '$[1][1]', ?)"
        " WHERE id = (SELECT min(id) FROM txns WHERE kind = 'deposit')",
        str(1000 * ONE),
    )
    report = led.audit()
    assert not report.clean
    checks = {(f.check, f.subject) for f in report.findings}
    assert ("balanced", "txn 1") in checks
    assert ("deposit", payer) in checks
    assert ("derived", A.user(payer)) in checks


def test_a_rewritten_receipt_is_caught_even_when_its_entries_balance(led: Ledger, books: dict[str, Any]) -> None:
    # lower q0's price and shift the difference back to the payer: every transaction still sums to zero
    q0 = led.journal.get("capture", "q0")
    assert q0 is not None and q0.amount is not None and q0.fee is not None
    entries = dict(q0.entries)
    entries[A.worker(q0.worker or "")] = 1
    entries.pop(A.FEE)
    entries[A.user(q0.payer or "")] = entries.get(A.user(q0.payer or ""), 0) + q0.amount - 1
    assert sum(entries.values()) == 0
    _tamper(
        led,
        "UPDATE txns SET amount = '1', fee = '0', entries = ? WHERE id = ?",
        json.dumps([[a, str(v)] for a, v in entries.items()]),
        q0.id,
    )
    report = led.audit()
    assert not report.clean
    checks = {f.check for f in report.findings}
    assert "root" in checks  # the settled root no longer matches the receipts
    assert "deposit" in checks  # and the payer's deposit no longer matches the chain

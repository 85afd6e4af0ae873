"""Audit: clean books agree with the chain; every tampering of the issue is caught; receipts are provable."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import orjson
import pytest

from ledger import Ledger, LedgerError
from ledger import accounts as A
from ledger.journal import GENESIS, row_hash
from ledger.units import ONE
from tests.ledger.conftest import hold, new_account


@pytest.fixture
def books(led: Ledger, payer: Any) -> dict[str, Any]:
    """Five paid queries, settled; one worker claimed; then one more paid query, one
    cancelled (hold + release) and one still running."""
    w1, w2 = new_account(), new_account()
    b = led.billing()
    for i in range(5):
        guid = f"q{i}"
        hold(b, payer, guid, 10**16)
        b.capture(guid, (w1 if i % 2 else w2).address, "chat", {"tokens": 100 * (i + 1)})
    led.settle()
    led.claim(w2)
    hold(b, payer, "late", 10**16)
    b.capture("late", w1.address, "chat", {"tokens": 50})
    hold(b, payer, "cancelled", 10**16)
    b.release("cancelled")
    hold(b, payer, "running", 10**16)
    return {"payer": payer, "w1": w1, "w2": w2}


def checks(led: Ledger) -> set[str]:
    report = led.audit()
    assert not report.clean
    return {f.check for f in report.findings}


def _tamper(led: Ledger, sql: str, *args: Any) -> None:
    raw = sqlite3.connect(led.journal.path)
    raw.execute(sql, args)
    raw.commit()
    raw.close()


def test_clean_books_agree_with_the_chain(led: Ledger, books: dict[str, Any]) -> None:
    report = led.audit()
    assert report.clean, report.as_dict()
    assert report.checked["receipts"] == 6
    assert report.checked["epochs_settled"] == 1
    assert report.checked["transactions"] == led.journal.last_txn_id()


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


def test_attack_an_unsettled_capture_raised_and_balanced_elsewhere_is_caught(
    led: Ledger, books: dict[str, Any]
) -> None:
    late = led.journal.get("capture", "late")
    assert late is not None and late.amount is not None
    more = late.amount + ONE // 2  # half a $9000 more for the worker, taken from the payer
    entries = dict(late.entries)
    entries[A.worker(late.worker or "")] += ONE // 2
    entries[A.user(late.payer or "")] -= ONE // 2
    _tamper(
        led,
        "UPDATE txns SET amount = ?, entries = ? WHERE id = ?",
        str(more),
        orjson.dumps([[a, str(v)] for a, v in entries.items()]).decode(),
        late.id,
    )
    assert {"hash_chain", "capture_hold", "authorisation"} <= checks(led)


def test_attack_a_deleted_hold_and_release_pair_is_caught(led: Ledger, books: dict[str, Any]) -> None:
    _tamper(led, "DELETE FROM txns WHERE ref = 'cancelled'")
    report = led.audit()
    assert [(f.check, f.detail) for f in report.findings if f.check == "hash_chain"] == [
        ("hash_chain", "a row before it was deleted")
    ]


def test_attack_a_forged_deposit_entry_is_caught(led: Ledger, books: dict[str, Any]) -> None:
    payer = books["payer"].address
    _tamper(
        led,
        "UPDATE txns SET entries = json_replace(entries, '$[1][1]', ?)"
        " WHERE id = (SELECT min(id) FROM txns WHERE kind = 'deposit')",
        str(1000 * ONE),
    )
    report = led.audit()
    found = {(f.check, f.subject) for f in report.findings}
    assert ("balanced", "txn 1") in found
    assert ("deposit", payer) in found
    assert ("derived", A.user(payer)) in found
    assert ("hash_chain", "txn 1") in found


def test_attack_a_settled_receipt_rewritten_with_every_hash_recomputed_is_caught(
    led: Ledger, books: dict[str, Any]
) -> None:
    # lower q0's price, give the difference back to the payer, and rebuild the whole hash
    # chain so that the journal is self-consistent again: only the chain's anchors know
    q0 = led.journal.get("capture", "q0")
    assert q0 is not None and q0.amount is not None
    entries = dict(q0.entries)
    entries[A.worker(q0.worker or "")] = 1
    entries.pop(A.FEE)
    entries[A.user(q0.payer or "")] = entries.get(A.user(q0.payer or ""), 0) + q0.amount - 1
    raw = sqlite3.connect(led.journal.path)
    raw.execute(
        "UPDATE txns SET amount = '1', fee = '0', entries = ? WHERE id = ?",
        (orjson.dumps([[a, str(v)] for a, v in entries.items()]).decode(), q0.id),
    )
    previous = GENESIS
    cols = "id, kind, ref, time, payer, worker, amount, fee, memo, auth, entries"
    for row in raw.execute(f"SELECT {cols} FROM txns ORDER BY id").fetchall():
        previous = row_hash(previous, tuple(row))
        raw.execute("UPDATE txns SET hash = ? WHERE id = ?", (previous, row[0]))
    raw.commit()
    raw.close()
    found = checks(led)
    assert "hash_chain" not in found  # the rewrite is consistent in itself ...
    assert {"anchor", "root", "earnings", "redeemed"} <= found  # ... but not with the chain


def test_receipts_waiting_too_long_for_settlement_are_a_finding(led: Ledger, books: dict[str, Any]) -> None:
    led.config.epoch_seconds = 0.2
    led.config.stale_epochs = 2
    time.sleep(0.5)
    report = led.audit()
    [stale] = [f for f in report.findings if f.check == "stale"]
    assert stale.journal == 1 and "upkeep" in stale.detail
    led.settle()
    assert led.audit().clean

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ledger import Journal, JournalUnavailable, LedgerError, open_journal
from ledger import accounts as A
from ledger.journal import Overdraft
from tests.ledger.conftest import raw

BIG = 7 * 10**30  # far beyond SQLite's 64-bit integers


def deposit(j: Journal, ref: str, user: str, amount: int) -> int | None:
    return j.post("deposit", ref, ((A.ESCROW, -amount), (A.user(user), amount)))


def test_every_transaction_sums_to_zero(at: str) -> None:
    j = open_journal(at)
    with pytest.raises(ValueError, match="unbalanced"):
        j.post("deposit", "x", ((A.ESCROW, -5), (A.user("a"), 4)))
    assert j.last_txn_id() == 0
    deposit(j, "t:0", "a", BIG)
    assert j.balances() == {A.ESCROW: -BIG, A.user("a"): BIG}
    assert j.unbalanced() == []


def test_no_account_but_escrow_goes_negative(at: str) -> None:
    j = open_journal(at)
    deposit(j, "t:0", "a", 10)
    with pytest.raises(Overdraft) as info:
        j.post("hold", "g", ((A.user("a"), -11), (A.hold("a"), 11)), payer="a", amount=11)
    assert (info.value.account, info.value.balance, info.value.needed) == (A.user("a"), 10, 11)
    assert j.last_txn_id() == 1
    assert j.balance(A.user("a")) == 10


def test_entries_read_as_a_table_too(at: str) -> None:
    j = open_journal(at)
    deposit(j, "t:0", "a", BIG)
    rows = raw(at).execute("SELECT txn, seq, account, amount FROM entries").fetchall()
    assert rows == [(1, 0, A.ESCROW, str(-BIG)), (1, 1, A.user("a"), str(BIG))]


def test_kind_and_ref_post_once(at: str) -> None:
    j = open_journal(at)
    assert deposit(j, "0xabc:3", "a", 10) == 1
    assert deposit(j, "0xabc:3", "a", 10) is None
    assert j.balance(A.user("a")) == 10
    assert deposit(j, "0xabc:4", "a", 10) == 2
    assert j.balance(A.user("a")) == 20


def test_balances_derive_from_entries_and_survive_a_reopen(at: str) -> None:
    j = open_journal(at)
    deposit(j, "t:0", "a", BIG)
    j.post("hold", "g", ((A.user("a"), -3), (A.hold("a"), 3)), payer="a", amount=3)
    j.post(
        "capture",
        "g",
        ((A.hold("a"), -3), (A.worker("w"), 2), (A.FEE, 1)),
        payer="a",
        worker="w",
        amount=3,
        fee=1,
    )
    before = j.balances()
    j.close()
    again = open_journal(at)
    assert again.balances() == before == again.recompute_balances()
    assert again.open_holds() == {}
    [r] = again.receipts()
    assert (r.guid, r.payer, r.worker, r.amount, r.fee) == ("g", "a", "w", 3, 1)


def test_open_holds_come_back_after_a_restart(at: str) -> None:
    j = open_journal(at)
    deposit(j, "t:0", "a", 10)
    j.post("hold", "g1", ((A.user("a"), -4), (A.hold("a"), 4)), payer="a", amount=4)
    j.close()
    assert open_journal(at).open_holds() == {"g1": ("a", 4)}


def test_another_process_postings_are_seen(at: str) -> None:
    realm = open_journal(at)
    cli = open_journal(at)
    deposit(cli, "t:0", "a", 10)
    assert realm.balance(A.user("a")) == 10
    # and a posting checks the other's funds under the write lock
    cli.post("hold", "g1", ((A.user("a"), -8), (A.hold("a"), 8)), payer="a", amount=8)
    with pytest.raises(Overdraft):
        realm.post("hold", "g2", ((A.user("a"), -8), (A.hold("a"), 8)), payer="a", amount=8)


def test_atomic_block_is_all_or_nothing(at: str) -> None:
    j = open_journal(at)
    deposit(j, "t:0", "a", 10)
    with pytest.raises(Overdraft):
        with j.atomic():
            j.post("hold", "g1", ((A.user("a"), -6), (A.hold("a"), 6)), payer="a", amount=6)
            j.post("hold", "g2", ((A.user("a"), -6), (A.hold("a"), 6)), payer="a", amount=6)
    assert j.balances() == {A.ESCROW: -10, A.user("a"): 10}
    assert open_journal(at).last_txn_id() == 1


async def test_loop_mode_commits_once_at_the_end_of_the_pass(at: str) -> None:
    j = open_journal(at, commit="loop")
    outside = raw(at)
    deposit(j, "t:0", "a", 10)
    deposit(j, "t:1", "a", 10)
    assert outside.execute("SELECT count(*) FROM txns").fetchone()[0] == 0
    await asyncio.sleep(0)
    assert outside.execute("SELECT count(*) FROM txns").fetchone()[0] == 2


async def test_a_refused_posting_takes_back_only_itself_not_the_rest_of_the_pass(at: str) -> None:
    """In loop mode a pass's postings share one transaction: a hold refused for
    want of funds (a new user's first query, before its welcome grant) must not
    take back the holds and charges of other users posted earlier in the pass,
    which the broker has already acted on."""
    j = open_journal(at, commit="loop")
    deposit(j, "t:0", "a", 10)
    await asyncio.sleep(0)
    assert j.post_hold("g-a", "a", 4)
    with pytest.raises(Overdraft):
        j.post_hold("g-new", "newcomer", 4)
    with pytest.raises(Overdraft):
        with j.atomic():  # a unit that fails half-way takes back its own first half
            j.post("hold", "g-a2", ((A.user("a"), -5), (A.hold("a"), 5)), payer="a", amount=5)
            j.post("hold", "g-a3", ((A.user("a"), -5), (A.hold("a"), 5)), payer="a", amount=5)
    assert j.open_hold("g-a") == ("a", 4) and j.open_hold("g-a2") is None
    await asyncio.sleep(0)
    seen = open_journal(at)  # what a restarted broker would find
    assert seen.open_hold("g-a") == ("a", 4) and seen.open_hold("g-a2") is None
    assert seen.balances() == {A.ESCROW: -10, A.user("a"): 6, A.hold("a"): 4}


def test_tampering_on_disk_shows(at: str) -> None:
    j = open_journal(at)
    deposit(j, "t:0", "a", 10)
    db = raw(at)
    if db.postgres:
        db.execute("UPDATE txns SET entries = jsonb_set(entries::jsonb, '{1,1}', '\"1000\"')::text WHERE id = 1")
    else:
        db.execute("UPDATE txns SET entries = json_replace(entries, '$[1][1]', '1000') WHERE id = 1")
    db.commit()
    assert j.unbalanced() == [(1, 990)]
    assert j.recompute_balances()[A.user("a")] == 1000


def test_history_is_per_address_newest_first(at: str) -> None:
    j = open_journal(at)
    deposit(j, "t:0", "a", 10)
    deposit(j, "t:1", "b", 10)
    j.post("hold", "g", ((A.user("a"), -1), (A.hold("a"), 1)), payer="a", amount=1)
    assert [t.kind for t in j.history("a")] == ["hold", "deposit"]
    assert [t.ref for t in j.history(None, limit=2)] == ["g", "t:1"]
    assert j.history("a")[0].as_dict()["entries"] == [
        {"account": A.user("a"), "amount": -1},
        {"account": A.hold("a"), "amount": 1},
    ]


def test_every_row_chains_to_the_one_before(at: str) -> None:
    j = open_journal(at)
    deposit(j, "t:0", "a", 10)
    j.post_hold("g", "a", 4, "4:0xsig")
    deposit(j, "t:1", "a", 5)
    assert j.verify_chain() == ([], 3)
    assert j.head() == (3, j.hash_at(3))
    assert len({j.hash_at(i) for i in (1, 2, 3)}) == 3
    again = open_journal(at)  # another connection continues the same chain
    deposit(again, "t:2", "a", 1)
    assert again.verify_chain() == ([], 4)


def test_an_edited_or_deleted_row_breaks_the_chain_where_it_happened(at: str) -> None:
    j = open_journal(at)
    for i in range(5):
        deposit(j, f"t:{i}", "a", 10)
    db = raw(at)
    db.execute("UPDATE txns SET ref = 't:x' WHERE id = 2")
    db.execute("DELETE FROM txns WHERE id = 4")
    db.commit()
    breaks, rows = j.verify_chain()
    assert rows == 4
    assert [(b.txn, b.gap) for b in breaks] == [(2, False), (5, True)]


def test_holding_the_same_guid_from_two_processes_holds_it_once(at: str) -> None:
    import threading

    realm = open_journal(at)
    other = open_journal(at)
    deposit(realm, "t:0", "a", 100)
    other.refresh()
    results: list[bool] = []
    # `realm` holds the write lock with its hold not committed yet; `other` looked
    # before and finds nothing, then waits for the lock ...
    with realm.atomic():
        realm.post_hold("g", "a", 30)
        worker = threading.Thread(target=lambda: results.append(other.post_hold("g", "a", 30)))
        worker.start()
        worker.join(0.3)
        assert worker.is_alive()  # blocked on the write lock
    worker.join(10)
    # ... and once it has the lock, it sees the hold and does not post a second one
    assert results == [False]
    assert realm.count("hold") == 1
    assert realm.balance(A.user("a")) == other.balance(A.user("a")) == 70


def test_holds_expire_back_to_the_payer(at: str) -> None:
    j = open_journal(at)
    deposit(j, "t:0", "a", 100)
    two_hours_ago = time.time() - 7200
    j.post("hold", "old", ((A.user("a"), -30), (A.hold("a"), 30)), payer="a", amount=30, at=two_hours_ago)
    j.post_hold("new", "a", 20)
    reopened = open_journal(at)  # holds and their times come back from disk
    assert reopened.expire_holds(time.time() - 3600) == ["old"]
    assert reopened.open_holds() == {"new": ("a", 20)}
    assert reopened.balance(A.user("a")) == 80
    assert reopened.get("hold_expired", "old") is not None
    assert reopened.verify_chain()[0] == []


def test_a_version_1_journal_is_refused_with_a_way_out(at: str) -> None:
    db = raw(at)
    if db.postgres:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    else:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.commit()
    with pytest.raises(LedgerError) as info:
        open_journal(at)
    assert info.value.code == "old_journal"
    assert "new realm" in info.value.hint


def test_a_database_without_the_journal_schema_says_to_migrate(postgres_server: Any) -> None:
    bare = postgres_server.create_database()
    with pytest.raises(LedgerError) as info:
        open_journal(bare)
    assert info.value.code == "schema_outdated"
    assert "mtor broker migrate --db" in info.value.hint


def test_one_upkeep_leads_and_another_takes_over_when_it_is_gone(at: str) -> None:
    first, second = open_journal(at), open_journal(at)
    if not at.startswith("postgresql://"):
        assert first.lead() and second.lead()  # one file, one broker, one upkeep
        return
    assert first.lead() and first.lead()
    assert not second.lead()
    first.close()  # its process died: the session lock goes with its connection ...
    deadline = time.monotonic() + 10
    while not second.lead():  # ... once the server has ended that session (not at once)
        assert time.monotonic() < deadline, "the lock outlived its connection"
        time.sleep(0.05)


def test_the_database_going_away_is_a_retryable_error_and_nothing_half_written(
    postgres_server: Any, pg_database: str
) -> None:
    j = open_journal(pg_database)
    deposit(j, "t:0", "a", 100)
    j.post_hold("g1", "a", 10)
    postgres_server.stop()
    try:
        with pytest.raises(JournalUnavailable) as info:
            with j.atomic():
                j.post_hold("g2", "a", 10)
                j.post_hold("g3", "a", 10)
        assert info.value.code == "unavailable" and "retry" in info.value.hint
        with pytest.raises(JournalUnavailable):
            j.post_hold("g4", "a", 10)
    finally:
        postgres_server.start()
    # back: the journal connects again by itself, and only what was committed is there
    assert j.open_holds() == {"g1": ("a", 10)}
    assert j.balance(A.user("a")) == 90
    assert j.post_hold("g2", "a", 10)
    assert open_journal(pg_database).open_holds() == {"g1": ("a", 10), "g2": ("a", 10)}
    assert j.verify_chain() == ([], 3)


def test_a_realm_whose_money_is_in_its_sqlite_journal_is_not_moved_to_postgresql_silently(
    tmp_path: Path, pg_database: str
) -> None:
    from ledger import Ledger, LedgerConfig

    config = LedgerConfig(tmp_path / "data")
    with Ledger(config) as led:  # a realm that ran with its SQLite journal
        deposit(led.journal, "t:0", "a", 10)
    with Ledger(replace(config, journal=pg_database)) as led, pytest.raises(LedgerError) as info:
        led.check_journal()
    assert info.value.code == "money_elsewhere"
    assert "journal.db keeps 1 transaction" in info.value.message
    with Ledger(replace(LedgerConfig(tmp_path / "fresh"), journal=pg_database)) as led:
        led.check_journal()  # a new realm's brokers: nothing elsewhere
        assert led.journal.where.startswith("postgresql://")

"""The realm's double-entry journal, in SQLite or PostgreSQL.

Every balance change is a transaction (one ``txns`` row) whose entries —
``[[account, amount], ...]`` in its ``entries`` column, also readable as the
``entries`` view — sum to zero. Amounts are integers in base units, stored as
decimal text because 18-decimal amounts outgrow SQLite's 64-bit integers.
One row per transaction keeps a paid query (hold + capture) at two inserts.
Balances are derived from the entries: summed once when the journal opens,
then kept up to date as transactions are posted, here or by another process
on the same file (noticed through ``PRAGMA data_version``).

A transaction from outside is unique by ``(kind, ref)`` — a deposit by
``txhash:logindex``, a voucher by ``user:nonce`` — which makes posting
idempotent: the chain watcher can see the same event twice, or after a
restart, and it is credited once. Holds, captures and releases (the hot path)
are kept unique by guid in memory, by the one realm that bills.

Capture transactions are the query receipts that settlement batches into
epochs; they carry payer, worker, cost and fee in their own columns. A hold
carries the payer's spending authorisation that covered it (``auth``).

Tamper evidence: every row carries ``hash = sha256(previous row's hash ||
the row)``, so an edited, inserted or deleted row breaks the chain from there
on (:meth:`Journal.verify_chain`); each settlement anchors the head hash on
chain, so rewriting the whole chain shows too.

Commit policy: ``commit="each"`` commits every post (CLI, tools). With
``commit="loop"`` a post inside a running asyncio loop is committed once at
the end of the loop pass, together with everything else posted in that pass
(the broker's pattern); outside a loop it commits at once.

Backends: :class:`Journal` holds everything above and all of the journal's
SQL, written once for both dialects (``?`` placeholders, ``ON CONFLICT``);
a backend supplies the connection, the schema, the writers' lock and how to
notice other writers. :class:`SqliteJournal` is one file (the embedded
realm; ``BEGIN IMMEDIATE`` serialises writers, ``PRAGMA data_version`` tells
a reader whether to look); ``ledger.pg_journal.PgJournal`` is the schema
``ledger`` of a realm's PostgreSQL database, shared by the brokers of a realm
(an advisory transaction lock serialises writers). :func:`open_journal`
picks one by its location. Rows and hashes are the same in both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from ledger import accounts as A
from ledger.errors import LedgerError

CommitMode = Literal["each", "loop"]
log = logging.getLogger("mtor.ledger")

SCHEMA_VERSION = 2
GENESIS = b"\x00" * 32  # the "previous hash" of the first row


_INSERT_TXN = (
    "INSERT INTO txns(id, kind, ref, time, payer, worker, amount, fee, memo, auth, entries, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "id, kind, ref, time, payer, worker, amount, fee, memo, auth, entries, hash"
_CATCH_UP_COLUMNS = "id, kind, ref, payer, amount, time, entries, hash"
EPOCH_COLUMNS = (
    "number, first_txn, last_txn, receipts, root, earnings_root, earnings_total, journal_head, state, tx_hash, created"
)
# Billing's own kinds: unique per guid in memory, so they skip the `once`
# table. Every other kind (deposits, welcome grants, vouchers...) is recorded
# there: a separate table rather than a partial unique index on txns, because
# SQLite pays for a partial index on every insert (~4 us measured, about a
# fifth of a paid query) even for rows the index leaves out.
HOT_KINDS = frozenset(("hold", "capture", "release"))
_INSERT_ONCE = "INSERT INTO once(kind, ref) VALUES (?, ?) ON CONFLICT DO NOTHING"
_SET_ONCE = "UPDATE once SET txn = ? WHERE kind = ? AND ref = ?"


def encode_entries(rows: list[tuple[str, int]]) -> str:
    return orjson.dumps([[acct, str(v)] for acct, v in rows]).decode()


def decode_entries(text: str) -> list[tuple[str, int]]:
    return [(acct, int(v)) for acct, v in orjson.loads(text)]


def row_hash(previous: bytes, row: tuple[Any, ...]) -> bytes:
    """The chained hash of one txns row (its columns up to ``entries``, in order)."""
    return hashlib.sha256(previous + orjson.dumps(row)).digest()


class Overdraft(LedgerError):
    """A posting would take an account other than escrow below zero."""

    def __init__(self, account: str, balance: int, needed: int) -> None:
        super().__init__(
            "overdraft",
            f"{account} has {balance}, needs {needed}",
            "check the balance with `mtor wallet`",
        )
        self.account = account
        self.balance = balance
        self.needed = needed
@dataclass(frozen=True)
class Txn:
    id: int
    kind: str
    ref: str
    time: float
    entries: tuple[tuple[str, int], ...]
    payer: str | None = None
    worker: str | None = None
    amount: int | None = None
    fee: int | None = None
    memo: str | None = None
    auth: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "ref": self.ref,
            "time": self.time,
            "payer": self.payer,
            "worker": self.worker,
            "amount": self.amount,
            "fee": self.fee,
            "memo": self.memo,
            "entries": [{"account": a, "amount": v} for a, v in self.entries],
        }


@dataclass(frozen=True)
class Receipt:
    """One paid query, as settlement and audit see it."""

    txn: int
    guid: str
    payer: str
    worker: str
    amount: int  # what the payer was charged
    fee: int  # the realm's part of it
    time: int  # unix seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "guid": self.guid,
            "payer": self.payer,
            "worker": self.worker,
            "amount": str(self.amount),
            "fee": str(self.fee),
            "time": self.time,
            "txn": self.txn,
        }


@dataclass(frozen=True)
class ChainBreak:
    """A row whose stored hash is not the hash of its contents and its predecessor."""

    txn: int
    stored: bytes
    computed: bytes
    gap: bool  # the previous row's id is missing (a deleted row)


@dataclass
class _State:
    # read with .get(): indexing a missing account would create it
    balances: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    holds: dict[str, tuple[str, int, float]] = field(default_factory=dict)  # guid -> (user, amount, time)
    # per payer: captures minus shortfalls, what settlement redeems from the deposit on chain
    charged: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    exiting: set[str] = field(default_factory=set)  # payers with an exit pending on chain
    seen: int = 0  # highest txn id applied to the in-memory state
    head: bytes = GENESIS  # hash of row `seen`


class JournalUnavailable(LedgerError):
    """The journal's database cannot be reached now (PostgreSQL down or busy): nothing
    of the failed unit was written, and trying again later is safe."""

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message, "retry in a moment; resubmitting the same guid is always safe")


class Journal(ABC):
    """The journal, whatever holds it; a backend subclass connects and locks."""

    where: str  # the file or database, for messages (no password)
    _errors: tuple[type[BaseException], ...]  # what the driver raises
    _instr = "instr"  # the dialect's position-of-substring function

    def __init__(self, *, commit: CommitMode = "each") -> None:
        self._mode: CommitMode = commit
        self._in_tx = False
        self._commit_scheduled = False
        self._depth = 0  # nesting of atomic() blocks: postings inside commit at the outermost exit
        self._state = _State()
        self.commit_failures = 0  # loop passes whose postings could not be committed (logged)
        self._connect()
        self._catch_up()

    # --- what a backend supplies ---------------------------------------------

    @abstractmethod
    def _connect(self) -> None:
        """Open the connection and make sure the schema is this journal's."""

    @abstractmethod
    def _q(self, sql: str, args: Any = ()) -> Any:
        """Run one statement (``?`` placeholders); returns a DB-API cursor."""

    @abstractmethod
    def _begin_locked(self) -> None:
        """Start a transaction holding the writers' lock (one writer at a time)."""

    @abstractmethod
    def _changed(self) -> bool:
        """Whether anyone may have committed since the last look (cheap)."""

    @abstractmethod
    def _tx_state(self) -> Literal["ok", "failed", "none"]:
        """The connection's transaction: usable, failed (a statement errored inside
        it; only a rollback, to a savepoint or whole, recovers), or none."""

    def _committed(self) -> None:
        """After our own COMMIT (SQLite notes its data version)."""

    def lead(self) -> bool:
        """Whether this connection is (or now becomes) the one that does the realm's chain
        work; True for a journal only one upkeep uses."""
        return True

    def _close_connection(self) -> None:
        self._conn.close()

    _conn: Any

    def _check_version(self) -> None:
        row = self._q("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        version = int(row[0]) if row else 0
        if version != SCHEMA_VERSION:
            self._close_connection()
            raise LedgerError(
                "old_journal",
                f"{self.where} is a version {version} journal; this mtor keeps version {SCHEMA_VERSION}",
                "its contracts are the old ones too: settle and refund with the mtor that wrote it, "
                "then start a new realm (MTOR_HOME) for this one",
            )

    def _lost(self) -> None:
        """The database ended our transaction itself (a full disk, I/O, a dropped
        connection): what we posted in it is gone, and so is our memory of it."""
        self._in_tx = False
        self._commit_scheduled = False
        self._reload()

    # --- transactions --------------------------------------------------------

    def _begin(self) -> None:
        if not self._in_tx:
            self._begin_locked()
            self._in_tx = True
            # Holding the write lock: nobody else can post until we commit,
            # so catching up now makes every balance check below exact.
            self._catch_up()

    def commit(self) -> None:
        self._commit_scheduled = False
        if self._in_tx:
            try:
                self._q("COMMIT")
            except Exception:
                if self._in_tx:  # the transaction is still open: it goes back whole
                    with contextlib.suppress(Exception):
                        self._q("ROLLBACK")
                    self._lost()
                raise
            self._in_tx = False
            self._committed()

    def commit_pass(self) -> None:
        """The end of a loop pass: commit what it posted. A failure (the database gone)
        is logged and counted, never raised into the loop: the pass's postings are not
        written (its holds are not taken, so nothing is charged for them)."""
        try:
            self.commit()
        except Exception:
            self.commit_failures += 1
            log.exception("the journal %s could not commit a pass's postings; none of them were written", self.where)

    def rollback(self) -> None:
        if self._in_tx:
            self._in_tx = False
            self._q("ROLLBACK")
        # The in-memory state may hold postings that were rolled back.
        self._reload()

    def _after_post(self) -> None:
        if self._depth:
            return
        if self._mode == "loop":
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                if not self._commit_scheduled:
                    self._commit_scheduled = True
                    loop.call_soon(self.commit_pass)
                return
        self.commit()

    def _reload(self) -> None:
        """Forget the in-memory state (after postings were taken back): the next read or
        write rebuilds it from the rows (at once, unless the database is away now)."""
        self._state = _State()
        errors: tuple[type[BaseException], ...] = (*self._errors, JournalUnavailable)
        try:
            self._catch_up()
        except errors:
            pass  # the next look tries again: seen is 0, so it reads everything

    class _WriteCtx:
        """One atomic unit, a savepoint in the connection's transaction: in loop
        mode a pass's postings share that transaction, and a unit that fails
        (a hold refused for want of funds) takes back only its own postings,
        never those of other users the broker already acted on."""

        def __init__(self, journal: Journal) -> None:
            self.j = journal
            self._seen = 0

        def __enter__(self) -> Journal:
            j = self.j
            j._begin()
            if j._depth == 0:
                j._q("SAVEPOINT unit")
                self._seen = j._state.seen
            j._depth += 1
            return j

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            j = self.j
            j._depth -= 1
            if j._depth:
                return
            if exc_type is None:
                try:
                    j._q("RELEASE unit")
                except j._errors:
                    j._lost()
                    raise
            elif j._tx_state() != "none":
                try:
                    j._q("ROLLBACK TO unit")
                    j._q("RELEASE unit")
                except j._errors:
                    j._lost()
                    return  # the unit's own exception says what went wrong
                if j._state.seen != self._seen:
                    j._reload()  # the memory holds postings that were taken back
            else:  # the database ended the whole transaction itself (a full disk, I/O, gone)
                j._lost()
                return
            j._after_post()  # the rest of the pass commits as usual

    def _write(self) -> Journal._WriteCtx:
        """One atomic unit of postings (and any other rows) in this journal."""
        return Journal._WriteCtx(self)

    def atomic(self) -> Journal._WriteCtx:
        return self._write()

    def post(
        self,
        kind: str,
        ref: str,
        entries: Iterable[tuple[str, int]],
        *,
        payer: str | None = None,
        worker: str | None = None,
        amount: int | None = None,
        fee: int | None = None,
        memo: str | None = None,
        auth: str | None = None,
        at: float | None = None,
        overdraw: str | None = None,
    ) -> int | None:
        """Post one balanced transaction; returns its id, or None if ``(kind, ref)`` exists.

        Raises :class:`Overdraft` (and posts nothing) if an account that may not
        go negative would (``overdraw`` names one that may, for this posting:
        the realm's fee when it owes a loss it must cover), ValueError if the
        entries do not sum to zero.
        """
        rows = [(acct, v) for acct, v in entries if v]
        total = 0
        for _, v in rows:
            total += v
        if total != 0:
            raise ValueError(f"unbalanced transaction {kind}/{ref}: {rows}")
        if len({acct for acct, _ in rows}) != len(rows):  # one entry per account
            merged: dict[str, int] = {}
            for acct, v in rows:
                merged[acct] = merged.get(acct, 0) + v
            rows = [(acct, v) for acct, v in merged.items() if v]
        if self._depth or kind not in HOT_KINDS:
            # A unit of its own (or part of the caller's): several statements.
            with self._write():
                self._check_funds(rows, overdraw)
                return self._insert(kind, ref, rows, payer, worker, amount, fee, memo, auth, at)
        # Billing's hot path: one INSERT, atomic by itself, and no savepoint to pay
        # for. A refused or failed posting leaves the rest of the pass alone.
        if not self._in_tx:
            self._begin()
        try:
            self._check_funds(rows, overdraw)
            return self._insert(kind, ref, rows, payer, worker, amount, fee, memo, auth, at)
        except self._errors:
            state = self._tx_state()
            if state != "ok":  # the database ended (or spoilt) the whole transaction
                if state == "failed":
                    self._q("ROLLBACK")
                self._lost()
            raise
        finally:
            if self._in_tx:
                self._after_post()

    def _check_funds(self, rows: list[tuple[str, int]], overdraw: str | None) -> None:
        balances = self._state.balances
        for acct, v in rows:
            if v < 0 and acct != overdraw and not A.may_go_negative(acct):
                have = balances.get(acct, 0)
                if have + v < 0:
                    raise Overdraft(acct, have, -v)

    def _insert(
        self,
        kind: str,
        ref: str,
        rows: list[tuple[str, int]],
        payer: str | None,
        worker: str | None,
        amount: int | None,
        fee: int | None,
        memo: str | None,
        auth: str | None,
        at: float | None,
    ) -> int | None:
        st = self._state
        txn = st.seen + 1  # under the write lock and caught up: the next id
        row = (
            txn,
            kind,
            ref,
            time.time() if at is None else at,
            payer,
            worker,
            None if amount is None else str(amount),
            None if fee is None else str(fee),
            memo,
            auth,
            encode_entries(rows),
        )
        digest = row_hash(st.head, row)
        once = kind not in HOT_KINDS
        if once and self._q(_INSERT_ONCE, (kind, ref)).rowcount == 0:
            return None  # (kind, ref) exists: posted before
        self._q(_INSERT_TXN, (*row, digest))
        if once:
            self._q(_SET_ONCE, (txn, kind, ref))
        st.head = digest
        self._apply(txn, kind, ref, payer, amount, row[3], rows)
        return txn

    def post_hold(self, guid: str, user: str, amount: int, auth: str | None = None) -> bool:
        """Hold ``amount`` of ``user``'s balance for ``guid``; False if ``guid`` is held already.

        The check runs under the write lock, after catching up with other
        writers, so two processes billing the same guid cannot both hold it.
        """
        if not self._in_tx:
            self._begin()
        if guid in self._state.holds:
            self._after_post()
            return False
        self.post("hold", guid, ((A.user(user), -amount), (A.hold(user), amount)), payer=user, amount=amount, auth=auth)
        return True

    def expire_holds(self, older_than: float) -> list[str]:
        """Give back holds opened before ``older_than`` (unix time) that never finished."""
        expired = []
        with self._write():
            for guid, (user, amount, opened) in list(self._state.holds.items()):
                if opened < older_than:
                    self.post(
                        "hold_expired",
                        guid,
                        ((A.hold(user), -amount), (A.user(user), amount)),
                        payer=user,
                        amount=amount,
                    )
                    expired.append(guid)
        return expired

    # --- in-memory state -----------------------------------------------------

    def _apply(
        self,
        txn: int,
        kind: str,
        ref: str,
        payer: str | None,
        amount: int | None,
        at: float,
        delta: Iterable[tuple[str, int]],
    ) -> None:
        st = self._state
        balances = st.balances
        for acct, v in delta:
            balances[acct] += v
        if kind == "hold" and payer is not None and amount is not None:
            st.holds[ref] = (payer, amount, at)
        elif kind in ("capture", "release", "hold_expired"):
            st.holds.pop(ref, None)
            if kind == "capture" and payer is not None and amount:
                st.charged[payer] += amount
        elif payer is not None:
            if kind == "shortfall" and amount:
                st.charged[payer] -= amount
            elif kind == "exit_started":
                st.exiting.add(payer)
            elif kind in ("exit_cancelled", "exit"):
                st.exiting.discard(payer)
        if txn > st.seen:
            st.seen = txn

    def _catch_up(self) -> None:
        """Apply transactions other connections committed since we last looked."""
        changed = self._changed()
        if not changed and not self._in_tx:
            return
        st = self._state
        for tid, kind, ref, payer, amount, at, entries, digest in self._rows_after(st.seen):
            self._apply(tid, kind, ref, payer, None if amount is None else int(amount), at, decode_entries(entries))
            st.head = bytes(digest)

    def _rows_after(self, seen: int) -> Iterable[tuple[Any, ...]]:
        """The rows a catch-up applies (a backend may have fetched them already)."""
        return self._q(f"SELECT {_CATCH_UP_COLUMNS} FROM txns WHERE id > ? ORDER BY id", (seen,))

    def refresh(self) -> None:
        if not self._in_tx:
            self._catch_up()

    # --- reads -----------------------------------------------------------------

    def balance(self, account: str) -> int:
        self.refresh()
        return self._state.balances.get(account, 0)

    def balances_of(self, accounts: Iterable[str]) -> dict[str, int]:
        """Several balances for one look at other writers (not one per account)."""
        self.refresh()
        known = self._state.balances
        return {a: known.get(a, 0) for a in accounts}

    def balances(self) -> dict[str, int]:
        self.refresh()
        return {a: v for a, v in self._state.balances.items() if v}

    def _before_write(self) -> None:
        """A look that a posting usually follows (billing's hold, capture, release)."""
        self.refresh()

    def open_hold(self, guid: str) -> tuple[str, int] | None:
        self._before_write()
        held = self._state.holds.get(guid)
        return None if held is None else (held[0], held[1])

    def touched(self, account: str) -> bool:
        """Whether any transaction ever posted to ``account``."""
        self.refresh()
        return account in self._state.balances

    def peers_owe(self) -> dict[str, int]:
        """What each peer realm owes now: its credit line less the credit it has left
        (``user:P``) and holds (``hold:P``); those owing nothing are left out."""
        self.refresh()
        balances = self._state.balances
        out = {}
        for acct, line in list(balances.items()):
            if acct.startswith("realm:"):
                peer = acct[6:]
                owed = -line - balances.get(A.user(peer), 0) - balances.get(A.hold(peer), 0)
                if owed > 0:
                    out[peer] = owed
        return out

    def open_holds(self) -> dict[str, tuple[str, int]]:
        self.refresh()
        return {g: (u, a) for g, (u, a, _) in self._state.holds.items()}

    def oldest_hold(self) -> float | None:
        """When the oldest open hold was opened (unix time), None without holds."""
        self.refresh()
        return min((t for _, _, t in self._state.holds.values()), default=None)

    def before_hold(self, guid: str, payer: str) -> tuple[bool, bool, int]:
        """What a hold needs to know, from one look at other writers: whether ``guid``
        is held already, whether ``payer`` is exiting, and what it committed."""
        self._before_write()
        st = self._state
        committed = st.charged.get(payer, 0) + st.balances.get(A.hold(payer), 0)
        return guid in st.holds, payer in st.exiting, committed

    def committed(self, payer: str) -> int:
        """What ``payer`` has spent or holds: the least its authorisation must cover."""
        self.refresh()
        st = self._state
        return st.charged.get(payer, 0) + st.balances.get(A.hold(payer), 0)

    def charged(self, payer: str) -> int:
        """Captures minus shortfalls of ``payer``: what settlement redeems on chain in all."""
        self.refresh()
        return self._state.charged.get(payer, 0)

    def exiting(self, payer: str) -> bool:
        """Whether ``payer`` started an exit on chain that has not finished or been cancelled."""
        self.refresh()
        return payer in self._state.exiting

    def exiting_payers(self) -> list[str]:
        self.refresh()
        return sorted(self._state.exiting)

    def head(self) -> tuple[int, bytes]:
        """The last row's id and hash."""
        self.refresh()
        return self._state.seen, self._state.head

    def hash_at(self, txn_id: int) -> bytes:
        row = self._q("SELECT hash FROM txns WHERE id = ?", (txn_id,)).fetchone()
        return GENESIS if row is None else bytes(row[0])

    def get(self, kind: str, ref: str) -> Txn | None:
        """The ``(kind, ref)`` transaction (a scan for the hot kinds, which have no index)."""
        if kind in HOT_KINDS:
            found = list(self._txns("WHERE kind = ? AND ref = ? ORDER BY id LIMIT 1", (kind, ref)))
        else:
            found = list(self._txns("WHERE id = (SELECT txn FROM once WHERE kind = ? AND ref = ?)", (kind, ref)))
        return found[0] if found else None

    def txn(self, txn_id: int) -> Txn | None:
        found = list(self._txns("WHERE id = ?", (txn_id,)))
        return found[0] if found else None

    def history(self, address: str | None = None, limit: int = 50) -> list[Txn]:
        """Newest first; with ``address``, only transactions touching its accounts."""
        if address is None:
            return list(self._txns("ORDER BY id DESC LIMIT ?", (limit,)))
        return list(
            self._txns(
                f"WHERE {self._instr}(entries, ?) > 0 OR payer = ? ORDER BY id DESC LIMIT ?", (f':{address}"', address, limit)
            )
        )

    def all_txns(self, after: int = 0, upto: int | None = None) -> Iterator[Txn]:
        if upto is None:
            return self._txns("WHERE id > ? ORDER BY id", (after,))
        return self._txns("WHERE id > ? AND id <= ? ORDER BY id", (after, upto))

    def kinds(self, *kinds: str, after: int = 0) -> Iterator[Txn]:
        """Transactions of the given kinds, oldest first."""
        marks = ", ".join("?" for _ in kinds)
        return self._txns(f"WHERE kind IN ({marks}) AND id > ? ORDER BY id", (*kinds, after))

    def _txns(self, where: str, args: tuple[Any, ...]) -> Iterator[Txn]:
        rows = self._q(
            f"SELECT id, kind, ref, time, payer, worker, amount, fee, memo, entries, auth FROM txns {where}", args
        )
        for r in rows:
            yield Txn(
                id=r[0],
                kind=r[1],
                ref=r[2],
                time=r[3],
                entries=tuple(decode_entries(r[9])),
                payer=r[4],
                worker=r[5],
                amount=None if r[6] is None else int(r[6]),
                fee=None if r[7] is None else int(r[7]),
                memo=r[8],
                auth=r[10],
            )

    def receipts(self, after_txn: int = 0, upto_txn: int | None = None) -> list[Receipt]:
        """Captured queries with ``after_txn < txn <= upto_txn``, in order."""
        upto = self.last_txn_id() if upto_txn is None else upto_txn
        rows = self._q(
            "SELECT id, ref, payer, worker, amount, fee, time FROM txns"
            " WHERE kind = 'capture' AND id > ? AND id <= ? ORDER BY id",
            (after_txn, upto),
        ).fetchall()
        return [
            Receipt(r[0], r[1], r[2], r[3], int(r[4]), int(r[5] or 0), int(r[6])) for r in rows
        ]

    def last_txn_id(self) -> int:
        row = self._q("SELECT max(id) FROM txns").fetchone()
        return int(row[0] or 0)

    def count(self, kind: str, after_txn: int = 0) -> int:
        row = self._q(
            "SELECT count(*) FROM txns WHERE kind = ? AND id > ?", (kind, after_txn)
        ).fetchone()
        return int(row[0])

    def nth_id(self, kind: str, after_txn: int, n: int) -> int | None:
        """The id of the ``n``-th ``kind`` transaction after ``after_txn`` (None if fewer)."""
        row = self._q(
            "SELECT id FROM txns WHERE kind = ? AND id > ? ORDER BY id LIMIT 1 OFFSET ?", (kind, after_txn, n - 1)
        ).fetchone()
        return None if row is None else int(row[0])

    def first_time(self, kind: str, after_txn: int = 0) -> float | None:
        row = self._q(
            "SELECT time FROM txns WHERE kind = ? AND id > ? ORDER BY id LIMIT 1", (kind, after_txn)
        ).fetchone()
        return None if row is None else float(row[0])

    def sum_amount(self, kind: str, **where: str) -> int:
        """Sum of the ``amount`` column of ``kind`` transactions matching ``where`` columns."""
        sql = "SELECT amount FROM txns WHERE kind = ?"
        args: list[Any] = [kind]
        for col, value in where.items():
            if col not in ("payer", "worker"):
                raise ValueError(col)
            sql += f" AND {col} = ?"
            args.append(value)
        return sum(int(r[0] or 0) for r in self._q(sql, args))

    # --- meta ------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._q("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._write():
            self._q(
                "INSERT INTO meta(key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # --- what settlement, billing and the desk ask of the rows ----------------------

    def hold_authorisations(self, after: int = 0, payer: str | None = None) -> list[tuple[int, str, str]]:
        """``(txn, payer, auth)`` of the holds after ``after`` that carried an
        authorisation (only ``payer``'s with one), oldest first."""
        sql = "SELECT id, payer, auth FROM txns WHERE kind = 'hold' AND id > ? AND auth IS NOT NULL"
        args: tuple[Any, ...] = (after,)
        if payer is not None:
            sql += " AND payer = ?"
            args = (after, payer)
        return [(int(r[0]), r[1], r[2]) for r in self._q(sql + " ORDER BY id", args).fetchall()]

    def capture_payers(self, after: int, upto: int) -> list[str]:
        """Every payer charged by a capture with ``after < txn <= upto``."""
        rows = self._q(
            "SELECT DISTINCT payer FROM txns WHERE kind = 'capture' AND id > ? AND id <= ? AND payer IS NOT NULL",
            (after, upto),
        ).fetchall()
        return sorted(r[0] for r in rows)

    def open_vouchers(self) -> list[tuple[str, str, int, str]]:
        """``(ref, payer, amount, memo)`` of every refund voucher neither expired nor redeemed."""
        rows = self._q(
            "SELECT ref, payer, amount, memo FROM txns WHERE kind = 'voucher'"
            " AND ref NOT IN (SELECT ref FROM txns WHERE kind IN ('voucher_expired', 'voucher_redeemed'))"
            " ORDER BY id"
        ).fetchall()
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows]

    def booked_chain_tx(self, tx_hash: str) -> bool:
        """Whether any movement of chain transaction ``tx_hash`` is booked (the watcher
        keys each one ``txhash:logindex``)."""
        tx = tx_hash.lower()  # as the watcher writes it
        row = self._q("SELECT 1 FROM once WHERE ref >= ? AND ref < ? LIMIT 1", (f"{tx}:", f"{tx};")).fetchone()
        return row is not None

    # --- epochs ------------------------------------------------------------------------

    def epoch_rows(self, state: str | None = None) -> list[tuple[Any, ...]]:
        """Every epoch (in ``state``), oldest first, as ``EPOCH_COLUMNS`` tuples."""
        if state is None:
            return self._q(f"SELECT {EPOCH_COLUMNS} FROM epochs ORDER BY number").fetchall()
        return self._q(
            f"SELECT {EPOCH_COLUMNS} FROM epochs WHERE state = ? ORDER BY number", (state,)
        ).fetchall()

    def epoch_row(self, number: int) -> tuple[Any, ...] | None:
        return self._q(f"SELECT {EPOCH_COLUMNS} FROM epochs WHERE number = ?", (number,)).fetchone()

    def last_epoch_row(self, state: str | None = None) -> tuple[Any, ...] | None:
        if state is None:
            return self._q(f"SELECT {EPOCH_COLUMNS} FROM epochs ORDER BY number DESC LIMIT 1").fetchone()
        return self._q(
            f"SELECT {EPOCH_COLUMNS} FROM epochs WHERE state = ? ORDER BY number DESC LIMIT 1", (state,)
        ).fetchone()

    def epoch_count(self, state: str) -> int:
        return int(self._q("SELECT count(*) FROM epochs WHERE state = ?", (state,)).fetchone()[0])

    def add_epoch(self, row: tuple[Any, ...]) -> None:
        """Record a closed epoch (``EPOCH_COLUMNS``, in order), inside :meth:`atomic`."""
        marks = ", ".join("?" for _ in row)
        with self._write():
            self._q(f"INSERT INTO epochs({EPOCH_COLUMNS}) VALUES ({marks})", row)

    def set_epoch_settled(self, number: int, state: str, tx_hash: str | None, at: float) -> None:
        with self._write():
            self._q(
                "UPDATE epochs SET state = ?, tx_hash = ?, settled = ? WHERE number = ?", (state, tx_hash, at, number)
            )

    def record_unbooked(self, ref: str, event: str, detail: str) -> bool:
        """Remember a chain event that could not be booked; False if it was already recorded."""
        with self._write():
            cur = self._q(
                "INSERT INTO unbooked(ref, event, detail, time) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (ref, event, detail, time.time()),
            )
        return cur.rowcount == 1

    def unbooked(self) -> list[dict[str, Any]]:
        rows = self._q("SELECT ref, event, detail, time FROM unbooked ORDER BY time").fetchall()
        return [{"ref": r[0], "event": r[1], "detail": r[2], "time": r[3]} for r in rows]

    # --- verification ----------------------------------------------------------

    def recompute_balances(self) -> dict[str, int]:
        """Every balance summed again from the entries on disk."""
        return self.recompute()[0]

    def unbalanced(self) -> list[tuple[int, int]]:
        """``(txn, sum)`` of every transaction whose entries do not sum to zero."""
        return self.recompute()[1]

    def recompute(self) -> tuple[dict[str, int], list[tuple[int, int]]]:
        """One pass over the rows on disk: every balance summed again, and ``(txn, sum)``
        of every transaction whose entries do not sum to zero."""
        totals: dict[str, int] = {}
        unbalanced = []
        for txn, entries in self._q("SELECT id, entries FROM txns ORDER BY id"):
            total = 0
            for acct, v in orjson.loads(entries):
                value = int(v)
                totals[acct] = totals.get(acct, 0) + value
                total += value
            if total:
                unbalanced.append((txn, total))
        return {a: v for a, v in totals.items() if v}, unbalanced

    def verify_chain(self, limit: int = 20) -> tuple[list[ChainBreak], int]:
        """Check every row's hash against its contents and the row before it; returns the
        rows where the chain breaks (at most ``limit``) and how many rows were checked.

        Each row is checked against the stored hash of its predecessor, so one
        edited row shows as one break (and a deleted row as a gap) instead of
        everything after it; a rewrite that recomputed every later hash is what
        the on-chain anchors of settled epochs catch.
        """
        breaks: list[ChainBreak] = []
        previous, expected_id, checked = GENESIS, 1, 0
        for r in self._q(f"SELECT {_COLUMNS} FROM txns ORDER BY id"):
            row, stored = tuple(r[:11]), bytes(r[11])
            computed = row_hash(previous, row)
            if (computed != stored or row[0] != expected_id) and len(breaks) < limit:
                breaks.append(ChainBreak(row[0], stored, computed, row[0] != expected_id))
            previous, expected_id = stored, row[0] + 1
            checked += 1
        return breaks, checked

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._close_connection()


class SqliteJournal(Journal):
    """The journal in one SQLite file (WAL): the embedded realm's, and one broker's."""

    _errors = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, commit: CommitMode = "each") -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self._data_version = -1
        super().__init__(commit=commit)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        self._conn = conn
        self._ensure_schema()

    def _q(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, args)

    def _begin_locked(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _changed(self) -> bool:
        version = self._read_data_version()
        if version == self._data_version:
            return False
        self._data_version = version
        return True

    def _committed(self) -> None:
        self._data_version = self._read_data_version()

    def _read_data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _tx_state(self) -> Literal["ok", "failed", "none"]:
        return "ok" if self._conn.in_transaction else "none"

    def _reload(self) -> None:
        self._data_version = -1
        super()._reload()

    # --- schema ------------------------------------------------------------

    def _table_names(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _ensure_schema(self) -> None:
        if "meta" in self._table_names():
            self._check_version()
            return
        ddl = [
            "CREATE TABLE txns (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, ref TEXT NOT NULL,"
            " time FLOAT NOT NULL, payer TEXT, worker TEXT, amount TEXT, fee TEXT, memo TEXT, auth TEXT,"
            " entries TEXT NOT NULL, hash BLOB NOT NULL)",
            "CREATE TABLE once (kind TEXT NOT NULL, ref TEXT NOT NULL, txn INTEGER,"
            " PRIMARY KEY (kind, ref)) WITHOUT ROWID",
            "CREATE VIEW entries AS SELECT t.id AS txn, CAST(j.key AS INTEGER) AS seq,"
            " j.value ->> 0 AS account, j.value ->> 1 AS amount FROM txns t, json_each(t.entries) j",
            "CREATE TABLE epochs (number INTEGER PRIMARY KEY, first_txn INTEGER NOT NULL,"
            " last_txn INTEGER NOT NULL, receipts INTEGER NOT NULL, root TEXT NOT NULL,"
            " earnings_root TEXT NOT NULL, earnings_total TEXT NOT NULL, journal_head TEXT NOT NULL,"
            " state TEXT NOT NULL, tx_hash TEXT, created FLOAT NOT NULL, settled FLOAT)",
            # chain events the watcher could not book: skipped, recorded, shown by the audit
            "CREATE TABLE unbooked (ref TEXT PRIMARY KEY, event TEXT NOT NULL, detail TEXT NOT NULL,"
            " time FLOAT NOT NULL)",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
        ]
        # One exclusive transaction: a second process opening a new journal at
        # the same moment waits, then finds every table.
        self._conn.execute("BEGIN EXCLUSIVE")
        try:
            if "meta" not in self._table_names():
                for sql in ddl:
                    self._conn.execute(sql)
                self._conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise


def open_journal(where: str | Path, *, commit: CommitMode = "each") -> Journal:
    """The journal at ``where``: a ``postgresql://`` URL (its ``ledger`` schema, made
    by ``mtor broker migrate``), else a SQLite file."""
    if isinstance(where, str) and where.startswith(("postgresql://", "postgres://")):
        from ledger.pg_journal import PgJournal

        return PgJournal(where, commit=commit)
    return SqliteJournal(where, commit=commit)

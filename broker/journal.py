"""The intent journal: one row per intent, in SQLite (WAL) or PostgreSQL.

An intent is written before `accepted` goes out and its outcome before it is
delivered. :meth:`Journal.add` is awaited: the insert doubles as the guid's
idempotency check. Outcomes (:meth:`Journal.finish`) are written by
:meth:`Journal.commit`, which the broker's outbox calls once per event-loop
pass for everything finished since, and always before the frames that depend
on those writes are sent (committing per write would triple the broker's CPU
per request).

:class:`SqliteJournal` (here) keeps one transaction open for the whole pass
and commits it at once; ``broker.pg.journal.PgJournal`` batches each pass's
writes into one statement and returns a future the outbox waits on, so no
frame leaves before what it reports is stored. Both are tested by one suite
(tests/broker/test_journal_store.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from broker.migrations import migrate_sqlite

# Intent states. "queued" covers running too: a running intent whose broker
# dies is simply queued again on restart.
QUEUED = "queued"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
FINAL_STATES = frozenset((DONE, FAILED, CANCELLED))

_INT64 = range(-(2**63), 2**63)


def stored_amount(amount: int) -> int | bytes:
    """An amount as SQLite keeps it exactly: an INTEGER within 64 bits, else
    its decimal digits as a BLOB (SQLite would turn a bigger number into a
    lossy REAL)."""
    return amount if amount in _INT64 else str(amount).encode()


def read_amount(value: int | bytes) -> int:
    return int(value)


@dataclass
class IntentRecord:
    guid: str
    user: str
    intent: str
    state: str
    query: bytes  # the normalised submit_query (JSON)
    price_held: int
    created: float
    outcome: bytes | None = None  # the encoded `result` or `error` once final


class Journal(Protocol):
    async def get(self, guid: str) -> IntentRecord | None: ...
    async def add(self, record: IntentRecord) -> bool: ...
    async def discard(self, guid: str) -> None: ...
    def finish(self, guid: str, state: str, outcome: bytes) -> None: ...
    async def unfinished(self) -> list[IntentRecord]: ...
    def commit(self) -> asyncio.Future[None] | None:
        """Store every outcome finished so far; None when that is done already,
        else a future that resolves once it is (never fails: a store that is
        down is retried until it answers)."""
        ...

    async def close(self) -> None: ...


class SqliteJournal:
    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so that one
        # transaction spans all writes of an event-loop pass.
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        migrate_sqlite(self._conn)
        # Checkpoints (copying the WAL into the database, with an fsync) run on
        # a thread of their own, not inside a commit on the event loop.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._in_tx = False
        self._rowids: dict[str, int] = {}  # unfinished intents' rows, so finish() needs no index walk
        self._checkpointer = _Checkpointer(path)

    def _begin(self) -> None:
        if not self._in_tx:
            self._conn.execute("BEGIN")
            self._in_tx = True

    async def get(self, guid: str) -> IntentRecord | None:
        row = self._conn.execute(
            "SELECT guid, user, intent, state, query, price_held, created, outcome"
            " FROM intents WHERE guid = ?",
            (guid,),
        ).fetchone()
        return _record(row) if row else None

    async def add(self, record: IntentRecord) -> bool:
        """Journal a new intent; False (and nothing written) if the guid is already there."""
        self._begin()
        cursor = self._conn.execute(
            "INSERT INTO intents (guid, user, intent, state, query, price_held, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (guid) DO NOTHING",
            (
                record.guid,
                record.user,
                record.intent,
                record.state,
                record.query,
                stored_amount(record.price_held),
                record.created,
            ),
        )
        if cursor.rowcount != 1 or cursor.lastrowid is None:
            return False
        self._rowids[record.guid] = cursor.lastrowid
        return True

    async def discard(self, guid: str) -> None:
        """Remove an unfinished intent that was then refused (no funds, a full queue)."""
        self._begin()
        rowid = self._rowids.pop(guid, None)
        if rowid is not None:
            self._conn.execute("DELETE FROM intents WHERE rowid = ?", (rowid,))
        else:
            self._conn.execute(f"DELETE FROM intents WHERE guid = ? AND state = '{QUEUED}'", (guid,))

    def finish(self, guid: str, state: str, outcome: bytes) -> None:
        """Record an unfinished intent's outcome (the first outcome wins)."""
        self._begin()
        rowid = self._rowids.pop(guid, None)
        if rowid is not None:  # always, for intents added or restored by this journal
            # By rowid: no walk of the guid index.
            self._conn.execute(
                f"UPDATE intents SET state = ?, outcome = ?, finished = ? WHERE rowid = ? AND state = '{QUEUED}'",
                (state, outcome, time.time(), rowid),
            )
        else:
            self._conn.execute(
                f"UPDATE intents SET state = ?, outcome = ?, finished = ? WHERE guid = ? AND state = '{QUEUED}'",
                (state, outcome, time.time(), guid),
            )

    async def unfinished(self) -> list[IntentRecord]:
        rows = self._conn.execute(
            "SELECT rowid, guid, user, intent, state, query, price_held, created, outcome"
            f" FROM intents WHERE state = '{QUEUED}' ORDER BY created"
        ).fetchall()
        for row in rows:
            self._rowids[row[1]] = row[0]
        return [_record(row[1:]) for row in rows]

    def commit(self) -> None:
        if self._in_tx:
            self._conn.execute("COMMIT")
            self._in_tx = False

    async def close(self) -> None:
        self.commit()
        self._checkpointer.stop()
        self._conn.close()


def _record(row: tuple[Any, ...]) -> IntentRecord:
    guid, user, intent, state, query, price_held, created, outcome = row
    return IntentRecord(guid, user, intent, state, query, read_amount(price_held), created, outcome)


class _Checkpointer:
    """Checkpoints the WAL every ``every_s`` seconds on its own connection.

    PASSIVE never blocks the broker's writes; the broker's next write
    transaction rewinds the WAL once a checkpoint has copied all of it.
    """

    def __init__(self, path: Path, every_s: float = 1.0) -> None:
        self._path = path
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mtor-journal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self._every_s):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

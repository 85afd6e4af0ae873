"""The realm's journal in PostgreSQL: one journal for every paid broker of a realm.

The rows live in the schema ``ledger`` of the realm's database (made by
``mtor broker migrate``, broker/sql/postgresql/003_ledger.sql); the SQL is
:class:`ledger.journal.Journal`'s, and so are the rows and their hashes.

- One writer at a time, as the hash chain needs: a writer's transaction
  starts with ``pg_advisory_xact_lock``, then catches up with what others
  committed (``WHERE id > seen``), so its balance checks are exact and its
  row ids follow on. The lock goes with the commit (or the connection).
- Outside a transaction, a read catches up with one indexed query.
- Inside one, the rows a pass posts are sent together, just before the next
  other statement (at the latest the COMMIT), in one round trip (a pipelined
  ``executemany``): the in-memory state, exact under the lock, answers every
  check meanwhile, and the pass's postings commit or vanish together as before.
- A sync connection (psycopg 3), not a pool: the journal's API is sync, its
  hot path is a few statements per event-loop pass, and a connection is
  cheaper there than a pool's bookkeeping (bench/ledger.py measures it).
- The connection's session also carries the upkeep's leadership
  (:meth:`PgJournal.lead`): several brokers mean several upkeep processes on
  one journal, and only the one holding the session lock does chain work; when
  its process dies the lock goes with its connection and another takes over.
- The server away: the statement raises :class:`JournalUnavailable` (a
  retryable error; the unit's postings are not written, a transaction never
  half-commits), and the next use connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, Literal

import psycopg
from psycopg.pq import TransactionStatus

from ledger.errors import LedgerError
from ledger.journal import _CATCH_UP_COLUMNS, _INSERT_TXN, CommitMode, Journal, JournalUnavailable

SCHEMA = "ledger"
# Advisory lock keys: "mtorJ" (writers) and "mtorU" (the upkeep's leader), in ASCII.
WRITER_LOCK = 0x6D746F724A
LEADER_LOCK = 0x6D746F7255
CONNECT_TIMEOUT_S = 5
LOCK_TIMEOUT = "10s"  # as SQLite's busy_timeout: a writer waits this long, then gives up
# A broker whose machine vanished mid-pass holds the writers' lock until the
# server notices: keepalives (10 s idle, then 3 probes 5 s apart) end its session,
# and a session idle inside a transaction this long is ended too (a stalled loop).
KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
IDLE_IN_TRANSACTION = "60s"


def redact(url: str) -> str:
    """``url`` without its password."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class PgJournal(Journal):
    _errors = (psycopg.Error,)
    _instr = "strpos"

    def __init__(self, url: str, *, commit: CommitMode = "each") -> None:
        self.url = url
        self.where = redact(url)
        self._sql: dict[str, str] = {}
        self._leading: Any = None  # the connection that holds the leader lock
        self._pending: list[Any] = []  # txns rows posted in this transaction, not sent yet
        self._fetched: list[Any] | None = None  # the catch-up rows BEGIN brought along
        self._conn: psycopg.Connection[Any] | None = None
        super().__init__(commit=commit)

    # --- the connection ------------------------------------------------------------

    def _connect(self) -> None:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, **KEEPALIVE)
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None
        try:
            found = conn.execute("SELECT to_regclass('ledger.meta') IS NOT NULL").fetchone()
            if not (found and found[0]):
                conn.close()
                raise LedgerError(
                    "schema_outdated",
                    f"the database {self.where} has no $9000 journal (schema `ledger`)",
                    f"run `mtor broker migrate --db {self.where}` once, then start the brokers",
                )
            conn.execute(f"SET search_path = {SCHEMA}")
            conn.execute(
                f"SET lock_timeout = '{LOCK_TIMEOUT}'; SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}';"
                " SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"
            )
        except psycopg.OperationalError as exc:
            conn.close()
            raise self._unavailable(exc) from None
        self._conn = conn
        self._check_version()

    def _usable(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.closed:
            if self._in_tx:  # the transaction went with the old connection
                self._lost()
                raise JournalUnavailable(f"the connection to the journal's database {self.where} was lost")
            self._connect()
            conn = self._conn
            assert conn is not None
        return conn

    def _q(self, sql: str, args: Any = ()) -> psycopg.Cursor[Any]:
        if sql is _INSERT_TXN and self._in_tx:
            self._pending.append(args)
            return None  # type: ignore[return-value]  # nobody reads an INSERT's cursor
        if self._pending:
            if sql in ("ROLLBACK", "ROLLBACK TO unit"):
                self._pending = []  # (all of a unit's rows follow its SAVEPOINT, which sent the earlier ones)
            elif sql == "COMMIT":
                self._flush(commit=True)  # the rows and the COMMIT: one round trip
                return None  # type: ignore[return-value]
            else:
                self._flush()
        return self._run(sql, args)

    def _flush(self, *, commit: bool = False) -> None:
        rows, self._pending = self._pending, []
        conn = self._usable()
        try:
            with conn.pipeline(), conn.cursor() as cur:
                cur.executemany(self._text(_INSERT_TXN), rows)
                if commit:
                    cur.execute("COMMIT")
        except psycopg.Error as exc:
            # The pass's rows went in together, so they fail together: give the
            # whole transaction back (and our memory of it).
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            self._lost()
            if isinstance(exc, psycopg.OperationalError):
                raise self._unavailable(exc) from None
            raise

    def _lost(self) -> None:
        self._pending = []
        super()._lost()

    def _text(self, sql: str) -> str:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = sql.replace("?", "%s")
        return text

    def _run(self, sql: str, args: Any) -> psycopg.Cursor[Any]:
        text = self._text(sql)
        conn = self._usable()
        try:
            return conn.execute(text, args or None)
        except psycopg.OperationalError as exc:
            if conn.closed:  # the server went away (or restarted) under us
                if self._in_tx:
                    self._lost()
                    raise self._unavailable(exc) from None
                # Outside a transaction nothing was lost: once more on a new connection
                # (after a restart of the server, the old one only fails when used).
                try:
                    return self._usable().execute(text, args or None)
                except psycopg.OperationalError as again:
                    raise self._unavailable(again) from None
            if isinstance(exc, psycopg.errors.LockNotAvailable):
                raise JournalUnavailable(
                    f"the journal {self.where} is busy: another writer held it over {LOCK_TIMEOUT}"
                ) from None
            raise

    def _unavailable(self, exc: BaseException) -> JournalUnavailable:
        text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        return JournalUnavailable(f"the journal's database {self.where} is unreachable: {text}")

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # --- writers and readers ------------------------------------------------------------

    def _begin_locked(self) -> None:
        # One round trip: BEGIN, the lock, and the catch-up the caller does next,
        # as one simple query (no parameters: the numbers are ours).
        seen = int(self._state.seen)
        try:
            cur = self._q(
                f"BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK});"
                f" SELECT {_CATCH_UP_COLUMNS} FROM txns WHERE id > {seen} ORDER BY id"
            )
            while cur.nextset():
                pass
            self._fetched = cur.fetchall()
        except BaseException:
            conn = self._conn
            if conn is not None and not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise

    def _rows_after(self, seen: int) -> Any:
        fetched, self._fetched = self._fetched, None
        if fetched is not None and self._in_tx:
            return fetched
        return super()._rows_after(seen)

    def _before_write(self) -> None:
        if self._in_tx:
            return
        if self._mode == "loop" and _in_loop():
            # The posting this look leads to takes the lock anyway: take it now, one
            # round trip for both, and the look is exact. The pass commits it, posted or not.
            self._begin()
            self._after_post()
        else:
            self.refresh()

    def _changed(self) -> bool:
        return True  # no cheaper question than the catch-up query itself

    def _tx_state(self) -> Literal["ok", "failed", "none"]:
        conn = self._conn
        if conn is None or conn.closed:
            return "none"
        status = conn.info.transaction_status
        if status == TransactionStatus.INTRANS:
            return "ok"
        return "failed" if status == TransactionStatus.INERROR else "none"

    def lead(self) -> bool:
        """Take (or keep) the realm's upkeep leadership: a session lock that
        lives as long as this connection, so a dead upkeep hands it on."""
        conn = self._usable()
        if self._leading is conn:
            return True
        row = self._q("SELECT pg_try_advisory_lock(?)", (LEADER_LOCK,)).fetchone()
        if row and row[0]:
            self._leading = conn
            return True
        return False


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True

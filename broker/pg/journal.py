"""The intent journal in PostgreSQL: the same interface as broker.journal.SqliteJournal.

Every broker of a realm writes here, so the guid's primary key is the
realm-wide idempotency check. Writes are batched: all :meth:`add` calls of an
event-loop pass become one ``INSERT ... SELECT FROM unnest(...)`` (one round
trip however many intents arrived), and all outcomes of a pass one
``UPDATE``; while a batch is on the wire the next one gathers, so the batch
grows with the load instead of the round trips.

An add that cannot reach the database fails at once with
:class:`broker.protocol.Unavailable` (the client gets ``unavailable`` and may
resubmit the same guid). An outcome is never dropped: its batch is retried
until the database answers, and the frames that report it wait (the future
:meth:`commit` returns), so a client never sees a result the journal lacks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from broker.journal import QUEUED, IntentRecord
from broker.pg.database import DOWN, Held, fetch_all, first_line, on_connection, unavailable

log = logging.getLogger("mtor.broker")

RETRY_MAX_S = 2.0

_INSERT_ONE = (
    'INSERT INTO intents (guid, "user", intent, state, query, price_held, created)'
    " VALUES (%s, %s, %s, %s, %s, %s::numeric, %s) ON CONFLICT (guid) DO NOTHING RETURNING guid"
)
# A batch is one statement however long: the columns as arrays (one row alone
# costs less as plain values: half the CPU of dumping seven arrays).
_INSERT = (
    'INSERT INTO intents (guid, "user", intent, state, query, price_held, created)'
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bytea[], %s::numeric[],"
    " %s::float8[]) ON CONFLICT (guid) DO NOTHING RETURNING guid"
)
# Only an unfinished intent gets an outcome: of two brokers that both ran an
# intent (one was cut off from the realm and presumed dead), the first wins.
_FINISH_ONE = f"UPDATE intents SET state = %s, outcome = %s, finished = %s WHERE guid = %s AND state = '{QUEUED}'"
_FINISH = (
    "UPDATE intents AS i SET state = u.state, outcome = u.outcome, finished = u.finished"
    " FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::float8[]) AS u(guid, state, outcome, finished)"
    f" WHERE i.guid = u.guid AND i.state = '{QUEUED}'"
)
_COLUMNS = 'guid, "user", intent, state, query, price_held, created, outcome'

Finish = tuple[str, str, bytes, float]


class PgJournal:
    def __init__(self, pool: AsyncConnectionPool[Any], report: Callable[[str], None]) -> None:
        """``report(task)`` counts a failed write in /metrics (it is logged and retried)."""
        self._pool = pool
        self._inserts = Held(pool)  # each writer has its own connection: one statement at a time each
        self._updates = Held(pool)
        self._report = report
        self._adds: list[tuple[IntentRecord, asyncio.Future[bool]]] = []
        self._adding: asyncio.Task[None] | None = None
        self._leading = False  # an add() is writing its own batch (see add)
        self._loaded = False  # adds came while the last INSERT was on the wire, or it carried several
        self._finishes: list[Finish] = []
        self._stored: list[tuple[list[Finish], asyncio.Future[None]]] = []  # committed passes, not yet written
        self._storing: asyncio.Task[None] | None = None

    # --- reads ------------------------------------------------------------

    async def get(self, guid: str) -> IntentRecord | None:
        rows = await fetch_all(self._pool, f"SELECT {_COLUMNS} FROM intents WHERE guid = %s", (guid,))
        return _record(rows[0]) if rows else None

    async def unfinished(self) -> list[IntentRecord]:
        rows = await fetch_all(
            self._pool, f"SELECT {_COLUMNS} FROM intents WHERE state = %s ORDER BY created", (QUEUED,)
        )
        return [_record(row) for row in rows]

    # --- new intents --------------------------------------------------------

    async def add(self, record: IntentRecord) -> bool:
        """Journal a new intent; False (and nothing written) if the guid is
        already there. Raises Unavailable when the database does not answer."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._adds.append((record, done))
        if self._adding is not None or self._leading:
            return await done
        # Nothing on the wire: this call writes its own batch itself (one task
        # fewer to wake on the path of a lone intent) and hands what gathered
        # meanwhile to a task. Under load it first lets the rest of this
        # event-loop pass join: going alone there put one statement more on
        # PostgreSQL per idle gap (a realm of three brokers sent 0.25 INSERTs
        # per intent instead of 0.13; docs/scale.md).
        self._leading = True
        batch: list[tuple[IntentRecord, asyncio.Future[bool]]] = []
        try:
            if self._loaded:
                await asyncio.sleep(0)
            batch, self._adds = self._adds, []
            await self._write_adds(batch)
        finally:
            self._leading = False
            if self._adds and self._adding is None:
                self._adding = asyncio.create_task(self._add_batches(), name="mtor-journal-add")
            else:
                self._loaded = len(batch) > 1
        return done.result()

    async def _add_batches(self) -> None:
        try:
            while self._adds:
                batch, self._adds = self._adds, []
                await self._write_adds(batch)
        finally:
            self._adding = None
            self._loaded = True

    async def _write_adds(self, batch: list[tuple[IntentRecord, asyncio.Future[bool]]]) -> None:
        """One INSERT for ``batch``; each add's future gets its answer."""
        try:
            inserted = await self._insert(batch)
        except Exception as exc:
            if not isinstance(exc, DOWN):
                self._report("journal-write")
                log.exception("journal: %d new intent(s) could not be stored", len(batch))
            error = unavailable(exc)
            for _, done in batch:
                if not done.done():
                    done.set_exception(error)
            return
        seen: set[str] = set()
        for record, done in batch:
            # A guid twice in one batch: only its first add can be the new one.
            fresh = record.guid in inserted and record.guid not in seen
            seen.add(record.guid)
            if not done.done():
                done.set_result(fresh)

    async def _insert(self, batch: list[tuple[IntentRecord, asyncio.Future[bool]]]) -> set[str]:
        records = [record for record, _ in batch]

        # A retried insert whose first try was stored reads as "known": the
        # dispatcher then finds the row unfinished and queues it all the same.
        async def insert(conn: Any) -> set[str]:
            if len(records) == 1:
                r = records[0]
                params = (r.guid, r.user, r.intent, r.state, r.query, str(r.price_held), r.created)
                cur = await conn.execute(_INSERT_ONE, params)
                return {row[0] for row in await cur.fetchall()}
            cur = await conn.execute(
                _INSERT,
                (
                    [r.guid for r in records],
                    [r.user for r in records],
                    [r.intent for r in records],
                    [r.state for r in records],
                    [r.query for r in records],
                    [str(r.price_held) for r in records],
                    [r.created for r in records],
                ),
            )
            return {row[0] for row in await cur.fetchall()}

        return await self._inserts.run(insert)

    async def discard(self, guid: str) -> None:
        """Remove an intent just added that was then refused (no funds, a full queue)."""
        async def delete(conn: Any) -> None:
            await conn.execute(f"DELETE FROM intents WHERE guid = %s AND state = '{QUEUED}'", (guid,))

        try:
            await on_connection(self._pool, delete)
        except DOWN as exc:
            raise unavailable(exc) from None

    # --- outcomes -----------------------------------------------------------

    def finish(self, guid: str, state: str, outcome: bytes) -> None:
        self._finishes.append((guid, state, outcome, time.time()))

    def commit(self) -> asyncio.Future[None] | None:
        if not self._finishes:
            return None
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stored.append((self._finishes, stored))
        self._finishes = []
        if self._storing is None:
            self._storing = asyncio.create_task(self._store_batches(), name="mtor-journal-finish")
        return stored

    async def _store_batches(self) -> None:
        delay = 0.05
        try:
            while self._stored:
                # Every pass committed so far, in one statement.
                batches = list(self._stored)
                try:
                    await self._update([row for rows, _ in batches for row in rows])
                except Exception as exc:  # down, or a bug: either way the outcomes are kept and retried
                    self._report("journal-write")
                    log.warning("journal: cannot store %d outcome(s), retrying in %.2f s: %s",
                                sum(len(rows) for rows, _ in batches), delay, first_line(exc),
                                exc_info=not isinstance(exc, DOWN))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                delay = 0.05
                del self._stored[: len(batches)]
                for _, stored in batches:
                    if not stored.done():
                        stored.set_result(None)
        finally:
            self._storing = None

    async def _update(self, rows: list[Finish]) -> None:
        first: dict[str, Finish] = {}
        for row in rows:
            first.setdefault(row[0], row)
        unique = list(first.values())

        async def update(conn: Any) -> None:
            if len(unique) == 1:
                guid, state, outcome, finished = unique[0]
                await conn.execute(_FINISH_ONE, (state, outcome, finished, guid))
                return
            await conn.execute(
                _FINISH,
                ([r[0] for r in unique], [r[1] for r in unique], [r[2] for r in unique], [r[3] for r in unique]),
            )

        await self._updates.run(update)

    async def settle(self, grace: float) -> int:
        """Store what is committed, for at most ``grace`` seconds (the broker is
        stopping); the number of outcomes left unstored. Their intents stay
        unfinished in the journal, so they run again (docs/scale.md)."""
        self.commit()
        for task in (self._storing, self._adding):
            if task is not None and not task.done():
                await asyncio.wait({task}, timeout=grace)
                if not task.done():
                    task.cancel()  # it waits for a database that does not answer
                    await asyncio.wait({task}, timeout=1.0)
        left = sum(len(rows) for rows, _ in self._stored)
        for _, stored in self._stored:
            stored.cancel()  # their frames are never sent: the clients resubmit the guids
        self._stored.clear()
        for held in (self._inserts, self._updates):
            await held.release()
        return left

    async def close(self) -> None:
        """Store what is committed (for as long as the database takes to answer)."""
        await self.settle(math.inf)


def _record(row: tuple[Any, ...]) -> IntentRecord:
    guid, user, intent, state, query, price_held, created, outcome = row
    return IntentRecord(guid, user, intent, state, bytes(query), int(price_held), created,
                        None if outcome is None else bytes(outcome))  # fmt: skip

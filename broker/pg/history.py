"""History and realm totals from the PostgreSQL journal (broker.history.History)."""

from __future__ import annotations

import time
from typing import Any

from psycopg_pool import AsyncConnectionPool

from broker.history import ACTIVE_WINDOW_S, MAX_LIMIT, entry, shown, summarise
from broker.journal import DONE
from broker.pg.database import DOWN, fetch_all, unavailable


class PgHistory:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def of_user(self, user: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = await fetch_all(
            self._pool,
            'SELECT guid, intent, state, query, price_held, created, finished, outcome FROM intents'
            ' WHERE "user" = %s ORDER BY created DESC LIMIT %s',
            (user, max(1, min(limit, MAX_LIMIT))),
        )
        return [entry(*_plain(row))[0] for row in rows]

    async def show(self, guid: str) -> tuple[str, dict[str, Any]] | None:
        rows = await fetch_all(
            self._pool,
            'SELECT "user", guid, intent, state, query, price_held, created, finished, outcome'
            " FROM intents WHERE guid = %s",
            (guid,),
        )
        return shown(_plain(rows[0])) if rows else None

    async def totals(self) -> dict[str, Any]:
        since = time.time() - ACTIVE_WINDOW_S
        try:
            async with self._pool.connection() as conn:

                async def rows(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
                    cur = await conn.execute(sql, params)
                    return await cur.fetchall()

                counts = await rows("SELECT intent, state, count(*) FROM intents GROUP BY intent, state")
                took = await rows(
                    "SELECT intent, finished - created FROM intents WHERE state = %s AND finished IS NOT NULL",
                    (DONE,),
                )
                done = [bytes(r[0]) for r in await rows("SELECT outcome FROM intents WHERE state = %s", (DONE,))]
                users = await rows('SELECT count(DISTINCT "user") FROM intents WHERE created >= %s', (since,))
                everyone = await rows('SELECT count(DISTINCT "user") FROM intents')
        except DOWN as exc:
            raise unavailable(exc) from None
        return summarise(counts, took, done, users[0][0], everyone[0][0])


def _plain(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """PostgreSQL's numeric and bytea as SQLite gives them: int and bytes."""
    return tuple(
        bytes(v) if isinstance(v, memoryview) else int(v) if type(v).__name__ == "Decimal" else v for v in row
    )

"""The connection pool every PostgreSQL store of a broker shares, and what its errors mean."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from broker.migrations import check_postgres, redact
from broker.protocol import Unavailable

log = logging.getLogger("mtor.broker")

POOL_SIZE = 8  # journal adds and outcomes (one held each, see Held), history, accounts: each a statement at a time
WAIT_S = 3.0  # how long a statement waits for a connection before it is "unavailable"
SYNCHRONOUS_COMMIT = ("off", "local", "on")

# What a statement raises when the server is down, restarting or unreachable.
DOWN = (psycopg.OperationalError, PoolTimeout, OSError)

T = TypeVar("T")


async def on_connection(pool: AsyncConnectionPool[Any], work: Callable[[Any], Awaitable[T]]) -> T:
    """``work(connection)`` on a pooled connection, and once more on another if
    that one was dead (the server restarted since it was opened: the pool
    only learns that when a statement fails). Raises what DOWN names."""
    try:
        async with pool.connection() as conn:
            return await work(conn)
    except psycopg.OperationalError:
        async with pool.connection() as conn:
            return await work(conn)


async def fetch_all(pool: AsyncConnectionPool[Any], sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Every row of one query (as :func:`on_connection`); raises Unavailable
    when the database does not answer."""

    async def fetch(conn: Any) -> list[tuple[Any, ...]]:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()

    try:
        return await on_connection(pool, fetch)
    except DOWN as exc:
        raise unavailable(exc) from None


class Held:
    """One pooled connection kept by one writer (the journal's inserts, its
    outcomes): a statement on the critical path of every intent skips the
    pool's checkout and runs on a connection that has it prepared already."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._conn: Any = None

    async def run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)``, and once more on a new connection if the held
        one was dead (as :func:`on_connection`). Raises what DOWN names."""
        try:
            return await work(await self._connection())
        except psycopg.OperationalError:
            await self.release()
            return await work(await self._connection())
        except BaseException:
            await self.release()  # cancelled mid-statement, or a bug: its state is unknown
            raise

    async def _connection(self) -> Any:
        if self._conn is None:
            self._conn = await self._pool.getconn()
        return self._conn

    async def release(self) -> None:
        """Give the connection back (the pool closes a broken one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.putconn(conn)


async def open_pool(url: str, synchronous_commit: str = "off") -> AsyncConnectionPool[Any]:
    """An open pool of autocommit connections to ``url``, after checking that
    the database answers and has this broker's schema.

    ``synchronous_commit`` is PostgreSQL's setting for the broker's sessions:
    ``off`` acknowledges a commit before it reaches the disk, so a crash of the
    PostgreSQL server (not of a broker) may lose the last ~0.6 s of commits,
    as SQLite's journal may on a power cut; ``on`` waits for the disk on every
    commit (docs/scale.md).
    """
    if synchronous_commit not in SYNCHRONOUS_COMMIT:
        raise ValueError(f"synchronous_commit must be one of {SYNCHRONOUS_COMMIT}, got {synchronous_commit!r}")

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(f"SET synchronous_commit = {synchronous_commit}")

    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=10) as conn:
            await check_postgres(conn, url)
    except DOWN as exc:
        raise Unavailable(
            "unreachable",
            f"cannot reach the database {redact(url)}: {first_line(exc)}",
            "check --db, and that PostgreSQL is running and accepts this user",
        ) from None
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        min_size=2,
        max_size=POOL_SIZE,
        kwargs={"connect_timeout": 5, "autocommit": True},
        configure=configure,
        timeout=WAIT_S,
        open=False,
        name="mtor-broker",
    )
    await pool.open(wait=True, timeout=10)
    return pool


def unavailable(exc: BaseException) -> Unavailable:
    return Unavailable(
        "unavailable",
        f"the realm's database is unreachable: {first_line(exc)}",
        "retry in a moment; resubmitting the same guid is always safe",
        retry_after=1.0,
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

"""Versioned SQL for the broker's stores, applied in order, each version once.

The scripts are ``broker/sql/<dialect>/NNN_name.sql`` (dialect ``sqlite`` or
``postgresql``); the ``mtor_schema`` table records which versions a database
has. A SQLite journal migrates itself when it opens (the embedded realm needs
no step). A PostgreSQL realm is migrated once by ``mtor broker migrate --db
URL``, under an advisory lock so that two runs never interleave, and each
broker checks the version when it starts: N brokers never race a schema
change, and a broker older or newer than its database says so instead of
failing later on a missing column.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from broker.protocol import MtorError

if TYPE_CHECKING:
    import psycopg

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_TABLE = (
    "CREATE TABLE IF NOT EXISTS mtor_schema"
    " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)"
)
# pg_advisory_xact_lock key: "mtor" in ASCII, so it is recognisable in pg_locks.
_LOCK = 0x6D746F72


class SchemaError(MtorError):
    """The database's schema is not the one this broker speaks."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: str) -> list[Migration]:
    """Every migration of ``dialect``, oldest first."""
    found = []
    for entry in (resources.files("broker") / "sql" / dialect).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def latest(dialect: str) -> int:
    return migrations(dialect)[-1].version


def migrate_sqlite(conn: sqlite3.Connection) -> list[Migration]:
    """Bring a SQLite database (opened with ``isolation_level=None``) up to date."""
    conn.execute(_TABLE)
    done = {row[0] for row in conn.execute("SELECT version FROM mtor_schema")}
    applied = []
    for m in migrations("sqlite"):
        if m.version in done:
            continue
        # executescript commits any open transaction first; BEGIN..COMMIT makes the step atomic.
        conn.executescript(
            f"BEGIN;\n{m.sql}\n;INSERT INTO mtor_schema (version, name, applied)"
            f" VALUES ({m.version}, '{m.name}', {time.time()});\nCOMMIT;"
        )
        applied.append(m)
    return applied


async def migrate_postgres(url: str) -> tuple[int, list[Migration]]:
    """Apply every missing migration to the PostgreSQL database at ``url`` in one
    transaction; returns (the version it had, the migrations applied)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, connect_timeout=10) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        await conn.execute(_TABLE)
        before = await _pg_version(conn)
        applied = []
        for m in migrations("postgresql"):
            if m.version <= before:
                continue
            await conn.execute(m.sql.encode())  # bytes: several statements, no parameters
            await conn.execute(
                "INSERT INTO mtor_schema (version, name, applied) VALUES (%s, %s, %s)",
                (m.version, m.name, time.time()),
            )
            applied.append(m)
    return before, applied


async def _pg_version(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM mtor_schema")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def check_postgres(conn: psycopg.AsyncConnection[Any], url: str) -> None:
    """Raise SchemaError unless the database has exactly this broker's schema."""
    cur = await conn.execute("SELECT to_regclass('mtor_schema') IS NOT NULL")
    row = await cur.fetchone()
    have = await _pg_version(conn) if row and row[0] else 0
    want = latest("postgresql")
    if have < want:
        raise SchemaError(
            "schema_outdated",
            f"the database {redact(url)} has schema version {have}; this broker needs {want}",
            f"run `mtor broker migrate --db {redact(url)}` once, then start the brokers",
            have=have,
            want=want,
        )
    if have > want:
        raise SchemaError(
            "schema_outdated",
            f"the database {redact(url)} has schema version {have}, newer than this broker's {want}",
            "upgrade this broker to the version the realm's other brokers run",
            have=have,
            want=want,
        )


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)

"""Where the broker keeps what must outlive it: a SQLite file, or a PostgreSQL database.

``--db`` picks the backend: a path (the default, one broker) or a
``postgresql://`` URL (a realm of brokers that share it). Each backend gives
the same parts, behind the same interfaces, tested by the same suites: the
intent journal (broker.journal.Journal), its history (broker.history.History)
and the accounts (broker.accounts.AccountStore).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.accounts import AccountStore
    from broker.config import BrokerConfig
    from broker.history import History
    from broker.journal import Journal

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
POOL_CLOSE_S = 1.0  # the pool's own tasks (reconnecting to a database that is gone) get this long


def is_postgres(db: object) -> bool:
    return isinstance(db, str) and db.startswith(POSTGRES_SCHEMES)


@dataclass
class Stores:
    journal: Journal
    history: History
    accounts: AccountStore
    # Each closer gets the seconds it may wait for its server and returns the
    # outcomes it could not store in that time.
    _closers: list[Callable[[float], Awaitable[int]]] = field(default_factory=list)

    async def close(self, grace: float = math.inf) -> int:
        """Close every store; what is still being written gets ``grace`` seconds.
        Returns the intents' outcomes left unstored (see PgJournal.settle)."""
        deadline = time.monotonic() + grace
        left = 0
        for close in self._closers:
            left += await close(max(0.0, deadline - time.monotonic()))
        return left


async def open_stores(config: BrokerConfig, report: Callable[[str], None]) -> Stores:
    """The journal, its history and the accounts ``config`` names. ``report(task)``
    counts a failed background write (it is logged and retried)."""
    if config.db_url is not None:
        from broker.pg.accounts import PgAccounts
        from broker.pg.database import open_pool
        from broker.pg.history import PgHistory
        from broker.pg.journal import PgJournal

        pool = await open_pool(config.db_url, config.synchronous_commit)
        pg_journal = PgJournal(pool, report)
        accounts = PgAccounts(pool)
        await accounts.reload()

        async def close_pool(grace: float) -> int:
            left = await pg_journal.settle(grace)
            await pool.close(timeout=POOL_CLOSE_S)
            return left

        return Stores(pg_journal, PgHistory(pool), accounts, [close_pool])
    from broker.accounts import SqliteAccounts, accounts_path
    from broker.history import SqliteHistory
    from broker.journal import SqliteJournal

    db = config.resolved_db_path()
    journal = SqliteJournal(db)
    sqlite_accounts = SqliteAccounts(accounts_path(db))

    async def close_files(grace: float) -> int:
        await journal.close()  # a local file: it commits at once
        await sqlite_accounts.close()
        return 0

    return Stores(journal, SqliteHistory(db), sqlite_accounts, [close_files])


"""Where the broker keeps what must outlive it: a SQLite file, or a PostgreSQL database.

``--db`` picks the backend: a path (the default, one broker) or a
``postgresql://`` URL (a realm of brokers that share it). Each backend gives
the same parts, behind the same interfaces, tested by the same suites: the
intent journal (broker.journal.Journal), its history (broker.history.History)
and the accounts (broker.accounts.AccountStore).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.accounts import AccountStore
    from broker.config import BrokerConfig
    from broker.history import History
    from broker.journal import Journal

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(db: object) -> bool:
    return isinstance(db, str) and db.startswith(POSTGRES_SCHEMES)


@dataclass
class Stores:
    journal: Journal
    history: History
    accounts: AccountStore
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in self._closers:
            await close()


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

        async def close_pool() -> None:
            await pg_journal.close()
            await pool.close()

        return Stores(pg_journal, PgHistory(pool), accounts, [close_pool])
    from broker.accounts import SqliteAccounts, accounts_path
    from broker.history import SqliteHistory
    from broker.journal import SqliteJournal

    db = config.resolved_db_path()
    journal = SqliteJournal(db)
    sqlite_accounts = SqliteAccounts(accounts_path(db))
    return Stores(journal, SqliteHistory(db), sqlite_accounts, [journal.close, sqlite_accounts.close])


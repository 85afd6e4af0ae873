"""Accounts in PostgreSQL (broker.accounts.AccountStore), shared by every broker of a realm.

The tables are the SQLite store's (sql/postgresql/002_accounts.sql). Bans,
sysops and nicknames are kept in memory for the hot paths and read again
when another broker says it changed them (broker.sysop sends the notice).
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from broker.accounts import NICKNAME, NICKNAME_RULE, AccountError, Ban, TrustRecord, audit_row, norm
from broker.pg.database import DOWN, on_connection, unavailable


class PgAccounts:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self.bans: dict[str, Ban] = {}
        self.sysops: set[str] = set()
        self.nicknames: dict[str, str] = {}

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async def run(conn: Any) -> list[tuple[Any, ...]]:
            cur = await conn.execute(sql, params)
            return await cur.fetchall() if cur.description else []

        try:
            return await on_connection(self._pool, run)
        except DOWN as exc:
            raise unavailable(exc) from None

    async def _count(self, sql: str, params: tuple[Any, ...]) -> int:
        async def run(conn: Any) -> int:
            cur = await conn.execute(sql, params)
            return int(cur.rowcount)

        try:
            return await on_connection(self._pool, run)
        except DOWN as exc:
            raise unavailable(exc) from None

    async def reload(self) -> None:
        self.bans = {norm(r[0]): Ban(*r) for r in await self._rows("SELECT address, reason, by, created FROM bans")}
        self.sysops = {norm(r[0]) for r in await self._rows("SELECT address FROM sysops")}
        self.nicknames = dict(await self._rows("SELECT lower(address), nickname FROM profiles"))

    async def close(self) -> None:
        pass  # the pool is the stores'

    # --- profiles -------------------------------------------------------

    async def set_nickname(self, address: str, nickname: str) -> None:
        if not NICKNAME.fullmatch(nickname):
            raise AccountError("bad_params", f"{nickname!r} is not a valid nickname", NICKNAME_RULE)
        try:
            await self._rows(
                "INSERT INTO profiles (address, nickname, updated) VALUES (%s, %s, %s)"
                " ON CONFLICT ((lower(address))) DO UPDATE SET nickname = excluded.nickname, updated = excluded.updated",
                (address, nickname, time.time()),
            )
        except psycopg.errors.UniqueViolation:
            raise AccountError("nickname_taken", f"the nickname {nickname!r} is taken", "pick another one") from None
        self.nicknames[norm(address)] = nickname

    def nickname(self, address: str) -> str | None:
        return self.nicknames.get(norm(address))

    # --- bans and sysops ------------------------------------------------

    async def ban(self, address: str, reason: str, by: str) -> Ban:
        ban = Ban(address, reason, by, time.time())
        await self._rows(
            "INSERT INTO bans (address, reason, by, created) VALUES (%s, %s, %s, %s) ON CONFLICT ((lower(address)))"
            " DO UPDATE SET reason = excluded.reason, by = excluded.by, created = excluded.created",
            (ban.address, ban.reason, ban.by, ban.created),
        )
        self.bans[norm(address)] = ban
        return ban

    async def unban(self, address: str) -> bool:
        await self._rows("DELETE FROM bans WHERE lower(address) = %s", (norm(address),))
        return self.bans.pop(norm(address), None) is not None

    def banned(self, address: str) -> Ban | None:
        return self.bans.get(norm(address))

    async def grant(self, address: str, by: str) -> None:
        await self._rows(
            "INSERT INTO sysops (address, granted_by, created) VALUES (%s, %s, %s) ON CONFLICT ((lower(address)))"
            " DO UPDATE SET granted_by = excluded.granted_by, created = excluded.created",
            (address, by, time.time()),
        )
        self.sysops.add(norm(address))

    async def revoke(self, address: str) -> bool:
        await self._rows("DELETE FROM sysops WHERE lower(address) = %s", (norm(address),))
        if norm(address) in self.sysops:
            self.sysops.discard(norm(address))
            return True
        return False

    # --- audit ----------------------------------------------------------

    async def audit(self, actor: str, action: str, target: str, detail: dict[str, Any], outcome: str) -> None:
        await self._rows(
            "INSERT INTO audit (ts, actor, action, target, detail, outcome) VALUES (%s, %s, %s, %s, %s, %s)",
            (time.time(), actor, action, target, json.dumps(detail, sort_keys=True), outcome),
        )

    async def audit_log(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self._rows(
            "SELECT id, ts, actor, action, target, detail, outcome FROM audit ORDER BY id DESC LIMIT %s", (limit,)
        )
        return [audit_row(r) for r in rows]

    # --- signed requests ------------------------------------------------

    async def spend_nonce(self, key: str, until: float) -> bool:
        return (
            await self._count(
                "INSERT INTO request_nonces (key, until) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, until)
            )
            == 1
        )

    async def forget_nonces(self, before: float) -> None:
        await self._rows("DELETE FROM request_nonces WHERE until < %s", (before,))

    # --- worker trust ---------------------------------------------------

    async def trust(self, address: str) -> TrustRecord:
        rows = await self._rows(
            "SELECT address, completed, aborted, maintenance FROM trust WHERE lower(address) = %s", (norm(address),)
        )
        return TrustRecord(*rows[0]) if rows else TrustRecord(address)

    async def save_trust(self, record: TrustRecord) -> None:
        await self._rows(
            "INSERT INTO trust (address, completed, aborted, maintenance) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT ((lower(address))) DO UPDATE SET completed = excluded.completed,"
            " aborted = excluded.aborted, maintenance = excluded.maintenance",
            (record.address, record.completed, record.aborted, record.maintenance),
        )

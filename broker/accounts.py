"""Accounts: nicknames, bans, sysop grants, the audit log, worker trust records,
and the nonces of signed REST requests still inside their window.

:class:`AccountStore` is the interface; :class:`SqliteAccounts` keeps them in
SQLite beside the intent journal (``broker.db`` -> ``broker.accounts.db``), on
a connection of its own that commits every write at once (these writes are
rare, must survive a restart, and must never wait on the journal's pass-long
transaction); ``broker.pg.accounts.PgAccounts`` keeps them in the realm's
PostgreSQL database, for every broker of the realm. Everything a hot path asks
(is this address banned? a sysop? its nickname?) is answered from memory;
writes are awaited.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from broker.protocol import MtorError

NICKNAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{2,31}")  # fullmatch: `$` would let a trailing newline in
NICKNAME_RULE = "3-32 characters: a letter, then letters, digits, '_', '.' or '-'"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    address TEXT PRIMARY KEY, nickname TEXT NOT NULL UNIQUE COLLATE NOCASE, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS bans (
    address TEXT PRIMARY KEY, reason TEXT NOT NULL, by TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sysops (
    address TEXT PRIMARY KEY, granted_by TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, detail TEXT NOT NULL, outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trust (
    address TEXT PRIMARY KEY, completed INTEGER NOT NULL, aborted INTEGER NOT NULL,
    maintenance TEXT);
CREATE TABLE IF NOT EXISTS request_nonces (key TEXT PRIMARY KEY, until REAL NOT NULL);
"""


class AccountError(MtorError):
    """A refused account change; ``code`` is one of broker.protocol.ERROR_CODES."""


@dataclass
class Ban:
    address: str
    reason: str
    by: str
    created: float


@dataclass
class TrustRecord:
    address: str
    completed: int = 0
    aborted: int = 0
    maintenance: str | None = None  # the reason, while in maintenance


def accounts_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.stem + ".accounts.db")


def norm(address: str) -> str:
    """Addresses are compared case-insensitively (checksums differ only in case)."""
    return address.lower()


class AccountStore(Protocol):
    bans: dict[str, Ban]  # norm(address) -> ban, in memory
    sysops: set[str]  # norm(address) of granted sysops, in memory

    def nickname(self, address: str) -> str | None: ...
    def banned(self, address: str) -> Ban | None: ...
    async def set_nickname(self, address: str, nickname: str) -> None: ...
    async def ban(self, address: str, reason: str, by: str) -> Ban: ...
    async def unban(self, address: str) -> bool: ...
    async def grant(self, address: str, by: str) -> None: ...
    async def revoke(self, address: str) -> bool: ...
    async def audit(self, actor: str, action: str, target: str, detail: dict[str, Any], outcome: str) -> None: ...
    async def audit_log(self, limit: int = 50) -> list[dict[str, Any]]: ...
    async def trust(self, address: str) -> TrustRecord: ...
    async def save_trust(self, record: TrustRecord) -> None: ...
    async def spend_nonce(self, key: str, until: float) -> bool:
        """Record a signed request's nonce as used until ``until`` (unix time);
        False if it was used already (on any broker, before a restart too)."""
        ...

    async def forget_nonces(self, before: float) -> None: ...
    async def reload(self) -> None:
        """Read what is kept in memory again (another broker of the realm changed it)."""
        ...

    async def close(self) -> None: ...


def audit_row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": r[0], "ts": r[1], "actor": r[2], "action": r[3], "target": r[4],
            "detail": json.loads(r[5]), "outcome": r[6]}  # fmt: skip


class SqliteAccounts:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._load()

    def _load(self) -> None:
        self.bans = {norm(r[0]): Ban(*r) for r in self._conn.execute("SELECT * FROM bans")}
        self.sysops = {norm(r[0]) for r in self._conn.execute("SELECT address FROM sysops")}
        self.nicknames = dict(self._conn.execute("SELECT lower(address), nickname FROM profiles"))

    async def reload(self) -> None:
        self._load()

    async def close(self) -> None:
        self._conn.close()

    # --- profiles -------------------------------------------------------

    async def set_nickname(self, address: str, nickname: str) -> None:
        if not NICKNAME.fullmatch(nickname):
            raise AccountError("bad_params", f"{nickname!r} is not a valid nickname", NICKNAME_RULE)
        row = self._conn.execute(
            "SELECT address FROM profiles WHERE nickname = ? COLLATE NOCASE", (nickname,)
        ).fetchone()
        if row is not None and norm(row[0]) != norm(address):
            raise AccountError("nickname_taken", f"the nickname {nickname!r} is taken", "pick another one")
        self._conn.execute(
            "INSERT INTO profiles (address, nickname, updated) VALUES (?, ?, ?)"
            " ON CONFLICT(address) DO UPDATE SET nickname = excluded.nickname, updated = excluded.updated",
            (address, nickname, time.time()),
        )
        self.nicknames[norm(address)] = nickname

    def nickname(self, address: str) -> str | None:
        return self.nicknames.get(norm(address))

    # --- bans and sysops ------------------------------------------------

    async def ban(self, address: str, reason: str, by: str) -> Ban:
        ban = Ban(address, reason, by, time.time())
        self._conn.execute(
            "INSERT OR REPLACE INTO bans (address, reason, by, created) VALUES (?, ?, ?, ?)",
            (ban.address, ban.reason, ban.by, ban.created),
        )
        self.bans[norm(address)] = ban
        return ban

    async def unban(self, address: str) -> bool:
        self._conn.execute("DELETE FROM bans WHERE lower(address) = ?", (norm(address),))
        return self.bans.pop(norm(address), None) is not None

    def banned(self, address: str) -> Ban | None:
        return self.bans.get(norm(address))

    async def grant(self, address: str, by: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO sysops (address, granted_by, created) VALUES (?, ?, ?)",
            (address, by, time.time()),
        )
        self.sysops.add(norm(address))

    async def revoke(self, address: str) -> bool:
        self._conn.execute("DELETE FROM sysops WHERE lower(address) = ?", (norm(address),))
        if norm(address) in self.sysops:
            self.sysops.discard(norm(address))
            return True
        return False

    # --- audit ----------------------------------------------------------

    async def audit(self, actor: str, action: str, target: str, detail: dict[str, Any], outcome: str) -> None:
        self._conn.execute(
            "INSERT INTO audit (ts, actor, action, target, detail, outcome) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), actor, action, target, json.dumps(detail, sort_keys=True), outcome),
        )

    async def audit_log(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT id, ts, actor, action, target, detail, outcome FROM audit ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [audit_row(r) for r in rows]

    # --- signed requests ------------------------------------------------

    async def spend_nonce(self, key: str, until: float) -> bool:
        """Record a signed request's nonce as used until ``until`` (unix time);
        False if it was used already, before a restart too."""
        cursor = self._conn.execute(
            "INSERT INTO request_nonces (key, until) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, until)
        )
        return cursor.rowcount == 1

    async def forget_nonces(self, before: float) -> None:
        """Drop nonces whose requests are too old to be accepted anyway."""
        self._conn.execute("DELETE FROM request_nonces WHERE until < ?", (before,))

    # --- worker trust ---------------------------------------------------

    async def trust(self, address: str) -> TrustRecord:
        row = self._conn.execute(
            "SELECT address, completed, aborted, maintenance FROM trust WHERE lower(address) = ?",
            (norm(address),),
        ).fetchone()
        return TrustRecord(*row) if row else TrustRecord(address)

    async def save_trust(self, record: TrustRecord) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO trust (address, completed, aborted, maintenance) VALUES (?, ?, ?, ?)",
            (record.address, record.completed, record.aborted, record.maintenance),
        )

"""API keys: secrets an HTTP client sends instead of signing, each bound to one address.

A key is ``sk-mtor-`` plus 43 random URL-safe characters (256 bits). The broker
keeps only its SHA-256 (a key that leaks from a backup of this file is
useless), its public id (``key_`` + 12 hex), the first characters for people
to recognise it, a name, and what it may spend: ``limit`` base units of
$9000 in all (``None``: no limit, in a free realm), of which ``spent`` is
used. In a paid realm it also keeps the standing spending authorisation its
owner signed when creating it (``authorisation``: total and signature; see
docs/openai.md), which the key's requests may be held under. Kept in SQLite beside the intent journal (``broker.db`` ->
``broker.keys.db``) on a connection that commits each write at once; every
lookup on a request's path is answered from memory.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.protocol import MtorError

KEY_PREFIX = "sk-mtor-"
SHOWN_CHARS = 12  # of the secret, kept for `mtor keys list`
MAX_KEYS_PER_ADDRESS = 100
MAX_NAME_CHARS = 64
LAST_USED_EVERY_S = 60.0  # `last_used` is written at most this often per key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, address TEXT NOT NULL, name TEXT NOT NULL,
    shown TEXT NOT NULL, created REAL NOT NULL, spend_limit TEXT, spent TEXT NOT NULL,
    revoked REAL, last_used REAL, auth TEXT);
"""


class KeyRefused(MtorError):
    """A refused key operation or request key; ``code`` is stable."""


@dataclass(eq=False)
class ApiKey:
    id: str
    address: str
    name: str
    shown: str  # the key's first characters, e.g. "sk-mtor-Ab3d"
    created: float
    limit: int | None  # base units the key may spend in all; None: unlimited (a free realm)
    spent: int = 0
    revoked: float | None = None
    last_used: float | None = None
    authorisation: tuple[int, str] | None = None  # (total, signature) its owner signed with it; paid realms
    live: dict[str, int] = field(default_factory=dict)  # guid -> price held, of requests running now

    def left(self) -> int | None:
        """What the key may still commit: its limit less what it spent and what its running requests hold."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.spent - sum(self.live.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "address": self.address,
            "key": self.shown + "…",
            "created": self.created,
            "limit": self.limit,
            "spent": self.spent,
            "revoked": self.revoked,
            "last_used": self.last_used,
        }


def keys_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.stem + ".keys.db")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        if "auth" not in {row[1] for row in self._conn.execute("PRAGMA table_info(api_keys)")}:
            self._conn.execute("ALTER TABLE api_keys ADD COLUMN auth TEXT")  # a keys file from before paid keys
        self._by_hash: dict[str, ApiKey] = {}
        self._by_id: dict[str, ApiKey] = {}
        self._by_address: dict[str, list[ApiKey]] = {}  # lower-case address -> its keys, oldest first
        self._written: dict[str, float] = {}  # key id -> when its last_used was last written
        for row in self._conn.execute(
            "SELECT id, hash, address, name, shown, created, spend_limit, spent, revoked, last_used, auth FROM api_keys"
        ):
            key = ApiKey(
                row[0], row[2], row[3], row[4], row[5], None if row[6] is None else int(row[6]), int(row[7]),
                row[8], row[9], _decode(row[10]),
            )
            self._by_hash[row[1]] = key
            self._by_id[key.id] = key
            self._by_address.setdefault(key.address.lower(), []).append(key)
        for listed in self._by_address.values():
            listed.sort(key=lambda k: k.created)

    def close(self) -> None:
        self._conn.close()

    def check(self, address: str, name: str, limit: int | None) -> str:
        """The name ``create`` would store; KeyRefused if it would refuse the key."""
        name = name.strip()
        if len(name) > MAX_NAME_CHARS:
            raise KeyRefused("bad_params", f"a key name is at most {MAX_NAME_CHARS} characters", "shorten --name")
        if limit is not None and limit < 0:
            raise KeyRefused("bad_params", "a key's limit must be >= 0", "give --limit in $9000, e.g. 5")
        if len(self.of(address)) >= MAX_KEYS_PER_ADDRESS:
            raise KeyRefused(
                "bad_params", f"{address} has {MAX_KEYS_PER_ADDRESS} active keys", "revoke one with `mtor keys revoke`"
            )
        return name

    def create(
        self, address: str, name: str, limit: int | None, authorisation: tuple[int, str] | None = None
    ) -> tuple[ApiKey, str]:
        """A new key for ``address``: the record and the secret (shown once, never stored).
        ``authorisation``: the standing one its owner signed for it (paid realms)."""
        name = self.check(address, name, limit)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            "key_" + secrets.token_hex(6), address, name, secret[: len(KEY_PREFIX) + 4], time.time(), limit,
            authorisation=authorisation,
        )
        hashed = digest(secret)
        self._conn.execute(
            "INSERT INTO api_keys (id, hash, address, name, shown, created, spend_limit, spent, revoked, last_used,"
            " auth) VALUES (?, ?, ?, ?, ?, ?, ?, '0', NULL, NULL, ?)",
            (key.id, hashed, key.address, key.name, key.shown, key.created, None if limit is None else str(limit),
             None if authorisation is None else f"{authorisation[0]}:{authorisation[1]}"),
        )
        self._by_hash[hashed] = key
        self._by_id[key.id] = key
        self._by_address.setdefault(address.lower(), []).append(key)
        return key, secret

    def find(self, secret: str) -> ApiKey | None:
        """The key with this secret, revoked or not; None if the realm never issued it."""
        return self._by_hash.get(digest(secret))

    def of(self, address: str) -> list[ApiKey]:
        """``address``'s keys that are not revoked, oldest first."""
        return [k for k in self._by_address.get(address.lower(), ()) if k.revoked is None]

    def reserved(self, address: str) -> int:
        """What ``address``'s keys that are not revoked may still spend, in all: the part of its
        standing authorisation that its other spending must leave to them."""
        return sum(k.left() or 0 for k in self.of(address))

    def authorisation(self, address: str) -> tuple[int, str] | None:
        """The highest standing authorisation ``address`` signed with any key of it, revoked or not."""
        signed = [k.authorisation for k in self._by_address.get(address.lower(), ()) if k.authorisation]
        return max(signed, default=None)

    def revoke(self, address: str, key_id: str) -> ApiKey:
        key = self._by_id.get(key_id)
        if key is None or key.address.lower() != address.lower():
            raise KeyRefused("unknown_key", f"you have no API key {key_id!r}", "list yours with `mtor keys list`")
        if key.revoked is None:
            key.revoked = time.time()
            self._conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ?", (key.revoked, key.id))
        return key

    def used(self, key: ApiKey) -> None:
        now = key.last_used = time.time()
        if now - self._written.get(key.id, 0.0) > LAST_USED_EVERY_S:
            self._written[key.id] = now
            self._conn.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now, key.id))

    def charged(self, key: ApiKey, cost: int) -> None:
        """Add a finished request's cost to what the key spent (written at once)."""
        if cost <= 0:
            return
        key.spent += cost
        self._conn.execute("UPDATE api_keys SET spent = ? WHERE id = ?", (str(key.spent), key.id))


def _decode(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    total, _, signature = text.partition(":")
    return int(total), signature

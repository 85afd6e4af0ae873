"""What a realm keeps about its federation: pinned peers, receipts both ways, acknowledgements.

SQLite beside the journal (``broker.db`` -> ``broker.federation.db``), on a
connection of its own. ``mtor federation peer add/remove`` writes the peers
table while the broker runs; the broker sees the change at its next sweep
(``PRAGMA data_version``) and dials or drops the peer. The broker's writes
(a forward, a receipt, an acknowledgement) are committed once per event-loop
pass, like the journal's.

Amounts are decimal text: base units of $9000 pass 2^63 at 9.2 $9000.

- ``forwards``: intents this realm forwarded to a peer (its evidence that it
  asked, and the most it agreed to pay);
- ``receipts_in``: the peer's signed receipts for them, ``accepted`` or
  ``disputed`` (left out of what this realm owes), each naming the envelope
  it came in (``proofs``: its signed header and frame hashes, kept once);
- ``receipts_out``: the receipts this realm gave a peer for intents it served;
- ``acks_in``: the peer's latest signed cumulative total of accepted receipts
  (what it agreed it owes), with the proof;
- ``settlements``: cumulative amounts settled on chain, per peer and role.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from broker.protocol import Ack, MtorError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    name TEXT PRIMARY KEY, url TEXT NOT NULL, address TEXT NOT NULL UNIQUE COLLATE NOCASE,
    max_credit TEXT NOT NULL, max_queued INTEGER NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS forwards (
    peer TEXT NOT NULL, guid TEXT NOT NULL, intent_guid TEXT NOT NULL, max_price TEXT,
    ts REAL NOT NULL, PRIMARY KEY (peer, guid));
CREATE TABLE IF NOT EXISTS receipts_in (
    peer TEXT NOT NULL, guid TEXT NOT NULL, seq INTEGER NOT NULL, worker TEXT NOT NULL,
    cost TEXT NOT NULL, total TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
    frame TEXT NOT NULL, proof TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (peer, guid));
CREATE TABLE IF NOT EXISTS proofs (
    origin TEXT NOT NULL, nonce TEXT NOT NULL, proof TEXT NOT NULL, PRIMARY KEY (origin, nonce));
CREATE TABLE IF NOT EXISTS receipts_out (
    peer TEXT NOT NULL, guid TEXT NOT NULL, seq INTEGER NOT NULL, journal_guid TEXT NOT NULL,
    worker TEXT NOT NULL, cost TEXT NOT NULL, total TEXT NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (peer, guid), UNIQUE (peer, seq));
CREATE TABLE IF NOT EXISTS acks_in (
    peer TEXT PRIMARY KEY, seq INTEGER NOT NULL, total TEXT NOT NULL, frame TEXT NOT NULL,
    proof TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS settlements (
    id INTEGER PRIMARY KEY, peer TEXT NOT NULL, role TEXT NOT NULL, total TEXT NOT NULL,
    tx TEXT NOT NULL, ts REAL NOT NULL);
"""

ACCEPTED = "accepted"
DISPUTED = "disputed"
PAYER = "payer"  # this realm pays the peer (it forwarded intents to it)
PAYEE = "payee"  # the peer pays this realm (it served the peer's intents)


class FederationError(MtorError):
    """A refused federation change (``code``: bad_params, not_found)."""


def federation_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.stem + ".federation.db")


@dataclass(frozen=True, slots=True)
class PeerRecord:
    name: str
    url: str
    address: str  # checksummed
    max_credit: int  # base units it may owe this realm unsettled
    max_queued: int  # its intents waiting in this realm's queues, per intent
    added: float


@dataclass(frozen=True, slots=True)
class ReceiptIn:
    peer: str
    guid: str
    seq: int
    worker: str
    cost: int
    total: int
    status: str
    reason: str
    frame: str
    proof: str


@dataclass(frozen=True, slots=True)
class ReceiptOut:
    peer: str
    guid: str
    seq: int
    journal_guid: str
    worker: str
    cost: int
    total: int


@dataclass(frozen=True, slots=True)
class AckIn:
    peer: str
    seq: int
    total: int
    frame: str
    proof: str


class FederationStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.commit()
        self._db.close()

    def commit(self) -> None:
        self._db.commit()

    def version(self) -> int:
        """Changes when another connection (the CLI) committed a write."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # --- peers (the CLI writes, the broker reads) -------------------------

    def peers(self) -> list[PeerRecord]:
        rows = self._db.execute(
            "SELECT name, url, address, max_credit, max_queued, added FROM peers ORDER BY added"
        ).fetchall()
        return [PeerRecord(r[0], r[1], r[2], int(r[3]), r[4], r[5]) for r in rows]

    def add_peer(self, record: PeerRecord) -> None:
        clash = self._db.execute(
            "SELECT name, address FROM peers WHERE name = ? OR address = ? COLLATE NOCASE",
            (record.name, record.address),
        ).fetchone()
        if clash is not None:
            what = f"name {record.name!r}" if clash[0] == record.name else f"key {record.address}"
            raise FederationError(
                "bad_params",
                f"a peer with the {what} is already pinned (as {clash[0]!r})",
                f"remove it first: `mtor federation peer remove {clash[0]}`",
            )
        self._db.execute(
            "INSERT INTO peers VALUES (?, ?, ?, ?, ?, ?)",
            (record.name, record.url, record.address, str(record.max_credit), record.max_queued, record.added),
        )
        self._db.commit()

    def remove_peer(self, name: str) -> PeerRecord:
        found = [p for p in self.peers() if p.name == name or p.address.lower() == name.lower()]
        if not found:
            raise FederationError(
                "not_found", f"no pinned peer {name!r}", "list them with `mtor federation peer list`"
            )
        self._db.execute("DELETE FROM peers WHERE name = ?", (found[0].name,))
        self._db.commit()
        return found[0]

    # --- as the origin: what we forwarded, the receipts we got -----------

    def forwarded(self, peer: str, guid: str, intent_guid: str, max_price: int | None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO forwards VALUES (?, ?, ?, ?, ?)",
            (peer, guid, intent_guid, None if max_price is None else str(max_price), time.time()),
        )

    def forward(self, peer: str, guid: str) -> tuple[str, int | None] | None:
        """(the intent's guid, the max price) of a forward, or None if we never sent it."""
        row = self._db.execute(
            "SELECT intent_guid, max_price FROM forwards WHERE peer = ? AND guid = ?", (peer, guid)
        ).fetchone()
        if row is None:
            return None
        return row[0], None if row[1] is None else int(row[1])

    def receipt_in(self, peer: str, guid: str) -> ReceiptIn | None:
        row = self._db.execute(
            "SELECT peer, guid, seq, worker, cost, total, status, reason, frame, proof FROM receipts_in "
            "WHERE peer = ? AND guid = ?",
            (peer, guid),
        ).fetchone()
        return None if row is None else _receipt_in(row)

    def add_receipt_in(self, r: ReceiptIn) -> bool:
        """Book a receipt; False if one for its guid is booked already."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO receipts_in VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.peer, r.guid, r.seq, r.worker, str(r.cost), str(r.total), r.status, r.reason, r.frame, r.proof,
             time.time()),
        )
        return cursor.rowcount == 1

    def add_proof(self, origin: str, nonce: str, proof: str) -> str:
        """Keep an envelope's proof once; returns the reference receipts and acks store."""
        self._db.execute("INSERT OR IGNORE INTO proofs VALUES (?, ?, ?)", (origin, nonce, proof))
        return nonce

    def proof(self, origin: str, ref: str) -> str | None:
        row = self._db.execute("SELECT proof FROM proofs WHERE origin = ? AND nonce = ?", (origin, ref)).fetchone()
        return None if row is None else str(row[0])

    def receipts_in(self, peer: str | None = None) -> Iterator[ReceiptIn]:
        sql = "SELECT peer, guid, seq, worker, cost, total, status, reason, frame, proof FROM receipts_in"
        rows = self._db.execute(sql + " WHERE peer = ? ORDER BY seq", (peer,)) if peer else self._db.execute(
            sql + " ORDER BY peer, seq"
        )
        for row in rows:
            yield _receipt_in(row)

    # --- as the serving realm: the receipts we gave, the acks we got -----

    def add_receipt_out(self, r: ReceiptOut) -> bool:
        """Record a receipt given; False if ``r.guid`` has one already."""
        try:
            self._db.execute(
                "INSERT INTO receipts_out VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (r.peer, r.guid, r.seq, r.journal_guid, r.worker, str(r.cost), str(r.total), time.time()),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def receipt_out(self, peer: str, guid: str) -> ReceiptOut | None:
        row = self._db.execute(
            "SELECT peer, guid, seq, journal_guid, worker, cost, total FROM receipts_out WHERE peer = ? AND guid = ?",
            (peer, guid),
        ).fetchone()
        return None if row is None else ReceiptOut(row[0], row[1], row[2], row[3], row[4], int(row[5]), int(row[6]))

    def receipts_out(self, peer: str, after_seq: int = 0) -> list[ReceiptOut]:
        rows = self._db.execute(
            "SELECT peer, guid, seq, journal_guid, worker, cost, total FROM receipts_out "
            "WHERE peer = ? AND seq > ? ORDER BY seq",
            (peer, after_seq),
        ).fetchall()
        return [ReceiptOut(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6])) for r in rows]

    def last_receipt_out(self, peer: str) -> tuple[int, int]:
        """(seq, total) of the last receipt given to ``peer``; (0, 0) before the first."""
        row = self._db.execute(
            "SELECT seq, total FROM receipts_out WHERE peer = ? ORDER BY seq DESC LIMIT 1", (peer,)
        ).fetchone()
        return (0, 0) if row is None else (row[0], int(row[1]))

    def set_ack_in(self, ack: AckIn) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO acks_in VALUES (?, ?, ?, ?, ?, ?)",
            (ack.peer, ack.seq, str(ack.total), ack.frame, ack.proof, time.time()),
        )

    def ack_in(self, peer: str) -> AckIn | None:
        row = self._db.execute(
            "SELECT peer, seq, total, frame, proof FROM acks_in WHERE peer = ?", (peer,)
        ).fetchone()
        return None if row is None else AckIn(row[0], row[1], int(row[2]), row[3], row[4])

    def signed_ack(self, peer: str) -> Ack | None:
        """The peer's latest ack as it signed it (what this realm claims on chain with)."""
        ack = self.ack_in(peer)
        return None if ack is None else msgspec.json.decode(ack.frame, type=Ack)

    # --- settlement ---------------------------------------------------------

    def settled(self, peer: str, role: str) -> int:
        row = self._db.execute(
            "SELECT total FROM settlements WHERE peer = ? AND role = ? ORDER BY id DESC LIMIT 1", (peer, role)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def add_settlement(self, peer: str, role: str, total: int, tx: str) -> None:
        self._db.execute(
            "INSERT INTO settlements (peer, role, total, tx, ts) VALUES (?, ?, ?, ?, ?)",
            (peer, role, str(total), tx, time.time()),
        )
        self._db.commit()


def _receipt_in(row: Any) -> ReceiptIn:
    return ReceiptIn(row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), row[6], row[7], row[8], row[9])

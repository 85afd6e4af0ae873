"""History and realm totals, read from the intent journal.

:class:`SqliteHistory` reads a SQLite journal on a read-only connection of its own
in a worker thread: WAL readers never block the broker's writer, and a scan
of a long journal never stalls the event loop. ``broker.pg.history`` asks
PostgreSQL the same questions; both turn rows into answers with the helpers
here. Only committed intents are seen.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any, Protocol

import msgspec

from broker.journal import DONE, FINAL_STATES, read_amount
from broker.protocol import Error, Result, SubmitQuery


class _Paid(msgspec.Struct):
    """The two fields of a stored result that realm totals add up."""

    worker: str | None = None
    cost: int = 0


_paid = msgspec.json.Decoder(_Paid)
_query = msgspec.json.Decoder(SubmitQuery)
_result = msgspec.json.Decoder(Result)
_error = msgspec.json.Decoder(Error)

ACTIVE_WINDOW_S = 24 * 3600.0
MAX_LIMIT = 1000


class History(Protocol):
    async def of_user(self, user: str, limit: int = 20) -> list[dict[str, Any]]: ...
    async def show(self, guid: str) -> tuple[str, dict[str, Any]] | None:
        """(owner, the stored entry with its full result or error) or None."""
        ...

    async def totals(self) -> dict[str, Any]: ...


class SqliteHistory:
    def __init__(self, journal_path: Path) -> None:
        self._path = journal_path

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{self._path}?mode=ro"
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    async def of_user(self, user: str, limit: int = 20) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._of_user, user, max(1, min(limit, MAX_LIMIT)))

    async def show(self, guid: str) -> tuple[str, dict[str, Any]] | None:
        """(owner, the stored entry with its full result or error) or None."""
        return await asyncio.to_thread(self._show, guid)

    async def totals(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._totals)

    def _of_user(self, user: str, limit: int) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT guid, intent, state, query, price_held, created, finished, outcome"
                " FROM intents WHERE user = ? ORDER BY created DESC LIMIT ?",
                (user, limit),
            ).fetchall()
        return [entry(*row)[0] for row in rows]

    def _show(self, guid: str) -> tuple[str, dict[str, Any]] | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT user, guid, intent, state, query, price_held, created, finished, outcome"
                " FROM intents WHERE guid = ?",
                (guid,),
            ).fetchone()
        return None if row is None else shown(row)

    def _totals(self) -> dict[str, Any]:
        since = time.time() - ACTIVE_WINDOW_S
        with self._connect() as conn:
            counts = conn.execute("SELECT intent, state, count(*) FROM intents GROUP BY intent, state").fetchall()
            took = conn.execute(
                "SELECT intent, finished - created FROM intents WHERE state = ? AND finished IS NOT NULL",
                (DONE,),
            ).fetchall()
            done = [row[0] for row in conn.execute("SELECT outcome FROM intents WHERE state = ?", (DONE,))]
            users = conn.execute("SELECT count(DISTINCT user) FROM intents WHERE created >= ?", (since,)).fetchone()[0]
            all_users = conn.execute("SELECT count(DISTINCT user) FROM intents").fetchone()[0]
        return summarise(counts, took, done, users, all_users)


def summarise(
    counts: list[tuple[str, str, int]],
    took: list[tuple[str, float]],
    done: list[bytes],
    users: int,
    all_users: int,
) -> dict[str, Any]:
    """Realm totals from the journal's rows: (intent, state, count) per group,
    (intent, seconds) per finished intent, the stored result of each done
    intent, and the distinct users of the last day and of all time. Costs are
    decoded here, not by the database: SQLite's json_extract reads an amount
    beyond 64 bits as a lossy REAL."""
    by_intent: dict[str, dict[str, Any]] = {}
    latencies: dict[str, list[float]] = {}
    spent = 0
    earned: dict[str, int] = {}
    for intent, state, n in counts:
        tally = by_intent.setdefault(intent, {"total": 0, "done": 0, "failed": 0, "cancelled": 0, "queued": 0})
        tally["total"] += n
        tally[state if state in tally else "queued"] += n
    for intent, seconds in took:
        latencies.setdefault(intent, []).append(seconds)
    for outcome in done:
        paid = _paid.decode(outcome)
        spent += paid.cost
        if paid.worker:
            earned[paid.worker] = earned.get(paid.worker, 0) + paid.cost
    for intent, tally in by_intent.items():
        ended = tally["done"] + tally["failed"]
        tally["success_rate"] = round(tally["done"] / ended, 4) if ended else None
        tally["latency_s"] = _percentiles(latencies.get(intent, []))
    done = sum(c["done"] for c in by_intent.values())
    failed = sum(c["failed"] for c in by_intent.values())
    return {
        "intents": by_intent,
        "total": sum(c["total"] for c in by_intent.values()),
        "success_rate": round(done / (done + failed), 4) if done + failed else None,
        "users": {"active_24h": users, "all_time": all_users},
        "tokens": {"spent": spent, "earned_by_worker": earned},
    }


def shown(row: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """(owner, entry with its full result or error) from (user, guid, intent,
    state, query, price_held, created, finished, outcome)."""
    item, outcome = entry(*row[1:])
    if isinstance(outcome, Result):
        item["result"] = msgspec.to_builtins(outcome)
    elif isinstance(outcome, Error):
        item["error"] = msgspec.to_builtins(outcome)
    return row[0], item


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p95": None, "count": 0}
    values.sort()
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return {"median": round(statistics.median(values), 4), "p95": round(p95, 4), "count": len(values)}


def entry(
    guid: str, intent: str, state: str, query: bytes, price_held: int | bytes, created: float,
    finished: float | None, outcome: bytes | None,
) -> tuple[dict[str, Any], Result | Error | None]:
    q = _query.decode(query)
    item: dict[str, Any] = {
        "guid": guid,
        "time": created,
        "intent": intent,
        "prompt": q.prompt,
        "model": q.model,
        "worker": None,
        "duration_s": None if finished is None else round(finished - created, 4),
        "cost": 0,
        "price_held": read_amount(price_held),
        "status": state,
    }
    decoded: Result | Error | None = None
    if outcome is not None and state in FINAL_STATES:
        if state == DONE:
            decoded = _result.decode(outcome)
            item.update(model=decoded.model or q.model, worker=decoded.worker, cost=decoded.cost)
        else:
            decoded = _error.decode(outcome)
            item["error_code"] = decoded.code
    return item, decoded

"""The realm's background bookkeeping: credit chain events, settle due epochs.

Runs beside the broker on its event loop, doing the chain work in a thread
with its own :class:`Ledger` (its own SQLite connection), so a slow or
unreachable chain never delays a query. When the chain is down the tick
fails, is logged once, and queries keep accruing; the next tick that reaches
the chain settles the waiting epoch first.
"""

from __future__ import annotations

import asyncio
import logging

from ledger import watcher
from ledger.errors import LedgerError
from ledger.service import Ledger, LedgerConfig

log = logging.getLogger("mtor.ledger")


def tick(led: Ledger) -> int:
    """One pass: sync deposits/withdrawals, settle if an epoch is due; returns epochs settled."""
    due = led.settler.due()
    if due:
        led.settler.close_epoch()  # fixed now, sent whenever the chain answers
    with led.session() as s:
        watcher.sync(led.journal, s, led.config.confirmations)
        return len(led.settler.settle(s)) if due else 0


async def run(config: LedgerConfig, stop: asyncio.Event, interval_s: float = 2.0) -> None:
    led = Ledger(config)
    failing: str | None = None
    try:
        while not stop.is_set():
            try:
                settled = await asyncio.to_thread(tick, led)
                if failing is not None:
                    log.info("the chain is back; bookkeeping resumed")
                    failing = None
                if settled:
                    log.info("settled %d epoch(s)", settled)
            except LedgerError as exc:
                if exc.message != failing:
                    log.warning("ledger upkeep: %s [%s] (queries keep accruing)", exc.message, exc.code)
                    failing = exc.message
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass
    finally:
        led.close()

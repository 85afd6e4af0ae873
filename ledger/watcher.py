"""Credits what happened on chain to the journal, exactly once.

Each RealmLedger event that moves tokens in or out of escrow becomes one
journal transaction keyed by ``txhash:logindex``, so scanning a block twice
(after a crash, or from two processes) posts nothing twice. Only blocks with
at least ``confirmations`` blocks on top of them are read; the cursor (the
last block read) lives in the journal's meta table.

- ``Deposited(user, from, amount)``: escrow -> ``user:U``
- ``Withdrawn(worker, amount)``: ``worker:W`` (``fee`` for the operator) -> escrow
- ``Refunded(user, amount, nonce)``: ``refund:U`` -> escrow
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger import accounts as A
from ledger.journal import Journal

CURSOR_KEY = "watch_block"
CHUNK_BLOCKS = 5000


@dataclass
class SyncReport:
    from_block: int
    to_block: int
    credited: list[dict[str, Any]] = field(default_factory=list)


def sync(journal: Journal, session: Any, confirmations: int = 0) -> SyncReport:
    """Read confirmed blocks since the cursor; post each new movement once."""
    dep = session.deployment
    start = int(journal.meta(CURSOR_KEY, str(dep.block - 1)) or 0) + 1
    safe_head = session.chain.head() - confirmations
    report = SyncReport(start, safe_head)
    ledger = session.ledger
    block = start
    while block <= safe_head:
        end = min(safe_head, block + CHUNK_BLOCKS - 1)
        logs: list[Any] = []
        for event in (ledger.events.Deposited, ledger.events.Withdrawn, ledger.events.Refunded):
            logs.extend(session.chain._call(lambda ev=event, lo=block, hi=end: ev.get_logs(from_block=lo, to_block=hi)))
        logs.sort(key=lambda lg: (lg["blockNumber"], lg["logIndex"]))
        with journal.atomic():
            for log in logs:
                posted = _post(journal, dep.operator, log)
                if posted is not None:
                    report.credited.append(posted)
            journal.set_meta(CURSOR_KEY, str(end))
        block = end + 1
    return report


def _post(journal: Journal, operator: str, log: Any) -> dict[str, Any] | None:
    ref = f"{log['transactionHash'].to_0x_hex()}:{log['logIndex']}"
    args = log["args"]
    name = log["event"]
    if name == "Deposited":
        who, amount = args["user"], int(args["amount"])
        entries = ((A.ESCROW, -amount), (A.user(who), amount))
        kind = "deposit"
    elif name == "Withdrawn":
        who, amount = args["worker"], int(args["amount"])
        source = A.FEE if who == operator else A.worker(who)
        entries = ((source, -amount), (A.ESCROW, amount))
        kind = "withdraw"
    else:
        who, amount = args["user"], int(args["amount"])
        entries = ((A.refund(who), -amount), (A.ESCROW, amount))
        kind = "refund"
    txn = journal.post(kind, ref, entries, payer=who, amount=amount, memo=f"block {log['blockNumber']}")
    if txn is None:
        return None
    return {"kind": kind, "address": who, "amount": amount, "ref": ref}

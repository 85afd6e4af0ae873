"""Books what happened on chain in the journal, exactly once.

Each RealmLedger event that moves tokens in or out of escrow, or changes what
a payer may spend, becomes one journal transaction keyed by
``txhash:logindex``, so scanning a block twice (after a crash, or from two
processes) posts nothing twice. Only blocks with at least ``confirmations``
blocks on top of them are read; the cursor (the last block read) lives in the
journal's meta table.

- ``Deposited(user, from, amount)``: escrow -> ``user:U``; the realm's own
  deposit of a welcome grant it already credited: escrow -> ``grants``
- ``Claimed(account, amount)``: ``worker:W`` -> escrow
- ``FeeWithdrawn(to, amount)``: ``fee`` -> escrow; ``Covered(from, amount)``: escrow -> ``fee``
- ``Refunded(user, amount, nonce)``: ``refund:U`` -> escrow
- ``ExitStarted(user)`` / ``ExitCancelled(user)``: markers (the realm stops
  taking the user's queries while an exit runs)
- ``Exited(user, amount)``: ``user:U`` -> escrow (what the realm failed to
  redeem in the window is a shortfall first: the fee pays it, going below
  zero if it must, which settlement covers before posting earnings)

An event that cannot be booked (its amounts do not fit the journal) is
recorded in the journal's ``unbooked`` table, logged, and skipped: the watcher
never stops on it, and ``mtor ledger audit`` reports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ledger import accounts as A
from ledger.journal import Journal, Overdraft

log = logging.getLogger("mtor.ledger")

CURSOR_KEY = "watch_block"
CHUNK_BLOCKS = 5000
EVENTS = ("Deposited", "Claimed", "FeeWithdrawn", "Covered", "Refunded", "ExitStarted", "ExitCancelled", "Exited")


@dataclass
class SyncReport:
    from_block: int
    to_block: int
    credited: list[dict[str, Any]] = field(default_factory=list)
    unbooked: list[dict[str, Any]] = field(default_factory=list)


def cursor(journal: Journal, deployment: Any) -> int:
    """The last block the watcher has read."""
    return int(journal.meta(CURSOR_KEY, str(deployment.block - 1)) or 0)


def sync(journal: Journal, session: Any, confirmations: int = 0) -> SyncReport:
    """Read confirmed blocks since the cursor; post each new movement once."""
    dep = session.deployment
    start = cursor(journal, dep) + 1
    safe_head = session.chain.head() - confirmations
    report = SyncReport(start, safe_head)
    topics = _topics(session.ledger)
    block = start
    while block <= safe_head:
        end = min(safe_head, block + CHUNK_BLOCKS - 1)
        raw = session.chain._call(
            lambda lo=block, hi=end: session.chain.w3.eth.get_logs(
                {"fromBlock": lo, "toBlock": hi, "address": dep.ledger, "topics": [list(topics)]}
            )
        )
        logs = [topics[bytes(lg["topics"][0])].process_log(lg) for lg in raw]
        logs.sort(key=lambda lg: (lg["blockNumber"], lg["logIndex"]))
        with journal.atomic():
            for lg in logs:
                _book(journal, dep, lg, report)
            journal.set_meta(CURSOR_KEY, str(end))
        block = end + 1
    return report


def _topics(ledger: Any) -> dict[bytes, Any]:
    """Each booked event by its topic: one `eth_getLogs` reads them all."""
    from eth_utils import event_abi_to_log_topic

    out = {}
    for name in EVENTS:
        event = getattr(ledger.events, name)()
        out[bytes(event_abi_to_log_topic(event.abi))] = event
    return out


def _book(journal: Journal, dep: Any, lg: Any, report: SyncReport) -> None:
    ref = f"{lg['transactionHash'].to_0x_hex()}:{lg['logIndex']}"
    name = lg["event"]
    try:
        posted = _post(journal, dep, name, ref, lg["args"], lg["blockNumber"])
    except (Overdraft, ValueError) as exc:
        detail = getattr(exc, "message", str(exc))
        if journal.record_unbooked(ref, name, detail):
            log.error("chain event %s %s could not be booked, skipped: %s", name, ref, detail)
        report.unbooked.append({"event": name, "ref": ref, "detail": detail})
        return
    if posted is not None:
        report.credited.append(posted)


def _post(journal: Journal, dep: Any, name: str, ref: str, args: Any, block: int) -> dict[str, Any] | None:
    memo = f"block {block}"
    entries: tuple[tuple[str, int], ...]
    if name == "Deposited":
        who, amount = args["user"], int(args["amount"])
        if journal.get("welcome_deposit", ref) is not None:
            return None  # read before, and booked as the grant it was
        if args["from"] == dep.owner and _awaits_grant(journal, who, amount):
            with journal.atomic():
                txn = journal.post(
                    "welcome_deposit",
                    ref,
                    ((A.ESCROW, -amount), (A.GRANTS, amount)),
                    payer=who,
                    amount=amount,
                    memo=memo,
                )
                journal.post("welcome_escrowed", who, (), payer=who, amount=amount)
            return {"kind": "welcome_deposit", "address": who, "amount": amount, "ref": ref} if txn else None
        else:
            kind, entries = "deposit", ((A.ESCROW, -amount), (A.user(who), amount))
    elif name == "Claimed":
        who, amount = args["account"], int(args["amount"])
        kind, entries = "claim", ((A.worker(who), -amount), (A.ESCROW, amount))
    elif name == "FeeWithdrawn":
        who, amount = args["to"], int(args["amount"])
        kind, entries = "fee_withdrawn", ((A.FEE, -amount), (A.ESCROW, amount))
    elif name == "Covered":
        who, amount = args["from"], int(args["amount"])
        kind, entries = "cover", ((A.ESCROW, -amount), (A.FEE, amount))
    elif name == "Refunded":
        who, amount = args["user"], int(args["amount"])
        kind, entries = "refund", ((A.refund(who), -amount), (A.ESCROW, amount))
    elif name == "ExitStarted":
        who, amount = args["user"], 0
        kind, entries, memo = "exit_started", (), f"block {block}; finishes after {int(args['finishAfter'])}"
    elif name == "ExitCancelled":
        who, amount = args["user"], 0
        kind, entries = "exit_cancelled", ()
    else:  # Exited
        who, amount = args["user"], int(args["amount"])
        with journal.atomic():
            short = amount - journal.balance(A.user(who))
            if short > 0:  # the realm let charges it never redeemed leave with the user
                journal.post(
                    "shortfall",
                    f"exit:{ref}",
                    ((A.FEE, -short), (A.user(who), short)),
                    payer=who,
                    amount=short,
                    memo="not redeemed before the exit finished",
                    overdraw=A.FEE,  # the realm owes it now; settlement covers it before posting earnings
                )
            txn = journal.post("exit", ref, ((A.user(who), -amount), (A.ESCROW, amount)), payer=who, amount=amount)
        return None if txn is None else {"kind": "exit", "address": who, "amount": amount, "ref": ref}
    txn = journal.post(kind, ref, entries, payer=who, amount=amount, memo=memo)
    if txn is None:
        return None
    return {"kind": kind, "address": who, "amount": amount, "ref": ref}


def _awaits_grant(journal: Journal, user: str, amount: int) -> bool:
    granted = journal.get("welcome", user)
    return granted is not None and granted.amount == amount and journal.get("welcome_escrowed", user) is None

"""Audit: recompute the journal from its rows, hold it against the payers' signatures and the chain.

Inside the journal, by itself:

- every row's hash chains to the row before it (an edited, inserted or deleted
  row breaks the chain there);
- every transaction sums to zero, no account but escrow and grants is
  negative, the balances in memory match a fresh sum of the rows on disk;
- every capture charges at most what its hold held, and its entries match its
  cost and fee;
- what each payer was charged in all is at most the highest total the payer
  validly signed (one signature check per payer);
- no chain event was left unbooked, and no receipt waits for settlement
  longer than ``stale_epochs`` epochs.

Against the chain:

- each settled epoch's receipts root, recomputed from the receipts, and its
  journal head, recomputed from the rows, equal what the chain recorded; the
  last settled earnings root and total equal what the journal's captures add up to;
- a payer's deposit = ``user`` + ``hold`` + ``refund`` + what it was charged and
  the chain has not redeemed yet (less a welcome grant not escrowed yet), and
  the chain never redeemed more than the journal charged;
- a worker's claims on chain = the claims in the journal, never beyond its
  settled earnings;
- the contract's token balance = -``escrow``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ledger import accounts as A
from ledger import merkle
from ledger.errors import LedgerError
from ledger.journal import Journal
from ledger.settlement import SETTLED, AuthIndex, Settler, add_earnings, leaves


@dataclass(frozen=True)
class Finding:
    check: str
    subject: str
    journal: int | str | None
    chain: int | str | None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "subject": self.subject,
            "journal": self.journal,
            "chain": self.chain,
            "detail": self.detail,
        }


@dataclass
class AuditReport:
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    proof: dict[str, Any] | None = None

    @property
    def clean(self) -> bool:
        return not self.findings and (self.proof is None or bool(self.proof.get("valid")))

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "checked": self.checked,
            "findings": [f.as_dict() for f in self.findings],
            "proof": self.proof,
        }


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


@dataclass
class Books:
    """What the journal's rows add up to, recomputed from disk by the audit."""

    balances: dict[str, int] = field(default_factory=dict)
    charged: dict[str, int] = field(default_factory=dict)  # payer -> captures minus shortfalls
    claims: dict[str, int] = field(default_factory=dict)  # worker -> claimed on chain, as booked


def audit_journal(
    journal: Journal, settler: Settler, terms: Any, stale_after_s: float | None
) -> tuple[AuditReport, Books]:
    """The checks that need no chain: hash chain, balances, holds, authorisations, staleness."""
    report = AuditReport()
    found = report.findings.append
    books = Books()

    breaks, rows = journal.verify_chain()
    for b in breaks:
        why = "a row before it was deleted" if b.gap else "the row changed after it was written"
        found(Finding("hash_chain", f"txn {b.txn}", _hex(b.stored), _hex(b.computed), why))
    recomputed, unbalanced = journal.recompute()
    books.balances = recomputed
    for txn_id, total in unbalanced:
        found(Finding("balanced", f"txn {txn_id}", total, None, "entries do not sum to zero"))
    derived = journal.balances()
    for acct in sorted(set(recomputed) | set(derived)):
        disk, memory = recomputed.get(acct, 0), derived.get(acct, 0)
        if disk != memory:
            found(Finding("derived", acct, disk, memory, "entries on disk changed under the running journal"))
        if disk < 0 and not A.may_go_negative(acct):
            found(Finding("negative", acct, disk, None, "only escrow and grants may be negative"))

    holds: dict[str, int] = {}
    charged, claims = books.charged, books.claims
    captures = 0
    for txn in journal.kinds("hold", "capture", "shortfall", "claim"):
        who = txn.payer or ""
        amount = txn.amount or 0
        if txn.kind == "hold":
            holds[txn.ref] = amount
            continue
        if txn.kind == "shortfall":
            charged[who] = charged.get(who, 0) - amount
            continue
        if txn.kind == "claim":
            claims[who] = claims.get(who, 0) + amount
            continue
        captures += 1
        charged[who] = charged.get(who, 0) + amount
        fee = txn.fee or 0
        held = holds.get(txn.ref)
        if held is None:
            found(Finding("capture_hold", txn.ref, amount, None, "a capture without a hold"))
        elif amount > held:
            found(Finding("capture_hold", txn.ref, amount, held, "the capture charged more than its hold"))
        if amount < 0 or not 0 <= fee <= amount:
            found(Finding("receipt", txn.ref, amount, fee, "a negative cost, or a fee outside 0..cost"))
        got = dict(txn.entries)
        credited = got.get(A.worker(txn.worker or ""), 0) + got.get(A.FEE, 0)
        if credited != amount or got.get(A.FEE, 0) != fee:
            found(Finding("receipt", txn.ref, amount, credited, "entries do not match the receipt's cost"))

    index = AuthIndex(journal)
    index.refresh()
    for payer, total in sorted(charged.items()):
        if total <= 0:
            continue
        best = index.best(terms, payer) if terms is not None else None
        signed = best[0] if best is not None else 0
        if total > signed:
            found(
                Finding(
                    "authorisation",
                    payer,
                    total,
                    signed,
                    "charged more than the payer's highest validly signed authorisation",
                )
            )

    for event in journal.unbooked():
        found(Finding("unbooked", event["ref"], event["event"], None, event["detail"]))

    waiting, oldest = settler.not_on_chain()
    if stale_after_s is not None and oldest is not None and time.time() - oldest > stale_after_s:
        status = journal.meta("upkeep") or "never ran"
        found(
            Finding(
                "stale",
                "settlement",
                waiting,
                None,
                f"receipts wait for settlement since {time.time() - oldest:.1f} s (over {stale_after_s:g} s);"
                f" upkeep: {status}",
            )
        )
    report.checked = {
        "transactions": rows,
        "accounts": len(recomputed),
        "receipts": captures,
        "payers": len(charged),
    }
    return report, books


def audit(led: Any, session: Any) -> AuditReport:
    """Every check, the chain's included (``led`` is the realm's Ledger)."""
    journal: Journal = led.journal
    settler: Settler = led.settler
    cfg = led.config
    stale = cfg.stale_epochs * cfg.epoch_seconds if cfg.stale_epochs else None
    report, books = audit_journal(journal, settler, session.deployment.terms(), stale)
    found = report.findings.append
    ledger = session.ledger
    call = session.chain._call

    # --- epochs ---------------------------------------------------------------------------
    epochs = settler.epochs()
    settled = [e for e in epochs if e.state == SETTLED]
    chain_epoch = int(call(lambda: ledger.functions.lastEpoch().call()))
    if chain_epoch != len(settled):
        found(Finding("epochs", "lastEpoch", len(settled), chain_epoch, "settled epochs differ"))
    anchors = {
        int(lg["args"]["epoch"]): (bytes(lg["args"]["receiptsRoot"]), bytes(lg["args"]["journalHead"]))
        for lg in call(lambda: ledger.events.Settled.get_logs(from_block=session.deployment.block))
    }
    for e in settled:
        root = merkle.root(leaves(journal.receipts(e.first_txn, e.last_txn)))
        on_chain, anchored = anchors.get(e.number, (merkle.ZERO_ROOT, None))
        if root != e.root or on_chain != e.root:
            found(Finding("root", f"epoch {e.number}", _hex(root), _hex(on_chain), "receipts no longer hash to the root"))
        head = journal.hash_at(e.last_txn)
        if head != e.journal_head or anchored != e.journal_head:
            found(
                Finding(
                    "anchor",
                    f"epoch {e.number}",
                    _hex(head),
                    None if anchored is None else _hex(anchored),
                    "the journal's rows up to this epoch are not the ones anchored on chain",
                )
            )
    posted: dict[str, int] = {}
    if settled:
        last = settled[-1]
        posted = add_earnings({}, journal.receipts(0, last.last_txn))  # afresh, from the rows on disk
        accounts, tree = merkle.earnings_tree(posted)
        root = tree[-1][0] if accounts else merkle.ZERO_ROOT
        total = sum(posted[a] for a in accounts)
        chain_root = bytes(call(lambda: ledger.functions.earningsRoot().call()))
        chain_total = int(call(lambda: ledger.functions.earningsTotal().call()))
        if root != chain_root or total != chain_total:
            found(
                Finding(
                    "earnings",
                    f"epoch {last.number}",
                    f"{_hex(root)} / {total}",
                    f"{_hex(chain_root)} / {chain_total}",
                    "cumulative earnings differ from the root on chain",
                )
            )

    # --- balances against the chain ------------------------------------------------------------
    recomputed, charged, claims = books.balances, books.charged, books.claims
    grants = led.pending_grants()
    payers: set[str] = set(charged) | set(grants)
    workers: set[str] = set(claims) | set(posted)
    for acct in recomputed:
        kind, _, who = acct.partition(":")
        if kind in ("user", "hold", "refund"):
            payers.add(who)
        elif kind == "worker":
            workers.add(who)
    everyone = sorted(payers | workers)
    on_chain_accounts: dict[str, tuple[int, int, int]] = {}
    for i in range(0, len(everyone), 500):
        chunk = everyone[i : i + 500]
        deposits, spent, claimed = call(lambda c=chunk: ledger.functions.accountsOf(c).call())
        for who, d, s, c in zip(chunk, deposits, spent, claimed, strict=True):
            on_chain_accounts[who] = (int(d), int(s), int(c))
    for who in sorted(payers):
        dep, spent, _ = on_chain_accounts[who]
        owed = charged.get(who, 0)
        if spent > owed:
            found(Finding("redeemed", who, owed, spent, "the chain redeemed more than the journal charged"))
        expected = sum(recomputed.get(a, 0) for a in (A.user(who), A.hold(who), A.refund(who)))
        expected += owed - spent - grants.get(who, 0)
        if dep != expected:
            found(Finding("deposit", who, expected, dep, "escrowed deposit differs"))
    for who in sorted(workers):
        claimed = on_chain_accounts[who][2]
        if claimed != claims.get(who, 0):
            found(Finding("claimed", who, claims.get(who, 0), claimed, "claimed earnings differ"))
        if claimed > posted.get(who, 0):
            found(Finding("claimed", who, posted.get(who, 0), claimed, "claimed beyond the settled earnings"))
    escrow = -recomputed.get(A.ESCROW, 0)
    held = int(call(lambda: session.token.functions.balanceOf(session.deployment.ledger).call()))
    if escrow != held:
        found(Finding("escrow", session.deployment.ledger, escrow, held, "tokens in the contract differ"))

    report.checked.update(
        epochs_settled=len(settled),
        payers_on_chain=len(payers),
        workers_on_chain=len(workers),
    )
    return report


def prove(journal: Journal, settler: Settler, session: Any, guid: str) -> dict[str, Any]:
    """Prove one query's receipt against its epoch's root, locally and on chain."""
    txn = journal.get("capture", guid)
    if txn is None:
        raise LedgerError("unknown_receipt", f"no paid query with guid {guid!r}", "see `mtor ledger history`")
    epoch = next((e for e in settler.epochs() if e.first_txn < txn.id <= e.last_txn), None)
    if epoch is None or epoch.state != SETTLED:
        raise LedgerError("not_settled", f"the receipt of {guid} is not settled yet", "run `mtor ledger settle` first")
    receipts = journal.receipts(epoch.first_txn, epoch.last_txn)
    index = next(i for i, r in enumerate(receipts) if r.guid == guid)
    lv = leaves(receipts)
    path = merkle.proof(lv, index)
    local = merkle.verify(lv[index], path, epoch.root)
    on_chain = bool(
        session.chain._call(lambda: session.ledger.functions.verifyReceipt(epoch.number, lv[index], path).call())
    )
    r = receipts[index]
    return {
        "guid": guid,
        "epoch": epoch.number,
        "payer": r.payer,
        "worker": r.worker,
        "amount": r.amount,
        "fee": r.fee,
        "time": r.time,
        "leaf": _hex(lv[index]),
        "proof": [_hex(p) for p in path],
        "root": _hex(epoch.root),
        "valid_locally": local,
        "valid_on_chain": on_chain,
        "valid": local and on_chain,
    }

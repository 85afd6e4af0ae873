"""Audit: recompute every balance from the journal and hold it against the chain.

What the chain should show follows from the journal alone:

- a payer's deposit = ``user`` + ``hold`` + ``refund`` + what they spent in
  receipts not settled yet;
- a worker's withdrawable earnings = ``worker`` − their part of unsettled receipts
  (the operator's: ``fee`` − the unsettled fees);
- the contract's token balance = −``escrow``;
- each settled epoch's root = the Merkle root of its receipts, on chain too.

Inside the journal: every transaction sums to zero, no account but escrow is
negative, each receipt's entries match its cost and fee, and the balances in
memory match a fresh sum of the entries on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger import accounts as A
from ledger import merkle
from ledger.errors import LedgerError
from ledger.journal import Journal
from ledger.settlement import SETTLED, Settler, leaves


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


def audit(journal: Journal, settler: Settler, session: Any) -> AuditReport:
    report = AuditReport()
    found = report.findings.append

    # --- the journal by itself ------------------------------------------------------------
    for txn_id, total in journal.unbalanced():
        found(Finding("balanced", f"txn {txn_id}", total, None, "entries do not sum to zero"))
    recomputed = journal.recompute_balances()
    derived = journal.balances()
    for acct in sorted(set(recomputed) | set(derived)):
        disk, memory = recomputed.get(acct, 0), derived.get(acct, 0)
        if disk != memory:
            found(Finding("derived", acct, disk, memory, "entries on disk changed under the running journal"))
        if disk < 0 and not A.may_go_negative(acct):
            found(Finding("negative", acct, disk, None, "only escrow may be negative"))
    captures = 0
    for txn in journal.all_txns():
        if txn.kind != "capture":
            continue
        captures += 1
        amount, fee = txn.amount or 0, txn.fee or 0
        got = dict(txn.entries)
        credited = got.get(A.worker(txn.worker or ""), 0) + got.get(A.FEE, 0)
        if credited != amount or got.get(A.FEE, 0) != fee:
            found(Finding("receipt", txn.ref, amount, credited, "entries do not match the receipt's cost"))

    # --- epochs ---------------------------------------------------------------------------
    ledger = session.ledger
    call = session.chain._call
    epochs = settler.epochs()
    settled = [e for e in epochs if e.state == SETTLED]
    last_settled_txn = settled[-1].last_txn if settled else 0
    chain_epoch = int(call(lambda: ledger.functions.lastEpoch().call()))
    if chain_epoch != len(settled):
        found(Finding("epochs", "lastEpoch", len(settled), chain_epoch, "settled epochs differ"))
    for e in settled:
        rs = journal.receipts(e.first_txn, e.last_txn)
        root = merkle.root(leaves(rs))
        on_chain = bytes(call(lambda n=e.number: ledger.functions.receiptsRoot(n).call()))
        if root != e.root or on_chain != e.root:
            found(
                Finding(
                    "root",
                    f"epoch {e.number}",
                    "0x" + root.hex(),
                    "0x" + on_chain.hex(),
                    "receipts no longer hash to the settled root",
                )
            )

    # --- balances against the chain ------------------------------------------------------------
    unsettled = journal.receipts(last_settled_txn)
    spent: dict[str, int] = {}
    owed: dict[str, int] = {}
    fee_owed = 0
    for r in unsettled:
        spent[r.payer] = spent.get(r.payer, 0) + r.amount
        owed[r.worker] = owed.get(r.worker, 0) + r.amount - r.fee
        fee_owed += r.fee
    payers: set[str] = set(spent)
    workers: set[str] = set(owed)
    for acct in recomputed:
        kind, _, who = acct.partition(":")
        if kind in ("user", "hold", "refund"):
            payers.add(who)
        elif kind == "worker":
            workers.add(who)
    operator = session.deployment.operator
    expected: dict[str, list[int]] = {}
    for who in payers:
        dep = sum(recomputed.get(a, 0) for a in (A.user(who), A.hold(who), A.refund(who))) + spent.get(who, 0)
        expected.setdefault(who, [0, 0])[0] = dep
    for who in workers:
        expected.setdefault(who, [0, 0])[1] = recomputed.get(A.worker(who), 0) - owed.get(who, 0)
    expected.setdefault(operator, [0, 0])[1] += recomputed.get(A.FEE, 0) - fee_owed
    for who, (dep, earned) in sorted(expected.items()):
        chain_dep, chain_earned = call(lambda w=who: ledger.functions.accountOf(w).call())
        if int(chain_dep) != dep:
            found(Finding("deposit", who, dep, int(chain_dep), "escrowed deposit differs"))
        if int(chain_earned) != earned:
            found(Finding("earned", who, earned, int(chain_earned), "withdrawable earnings differ"))
    escrow = -recomputed.get(A.ESCROW, 0)
    held = int(call(lambda: session.token.functions.balanceOf(session.deployment.ledger).call()))
    if escrow != held:
        found(Finding("escrow", session.deployment.ledger, escrow, held, "tokens in the contract differ"))

    report.checked = {
        "transactions": journal.last_txn_id(),
        "accounts": len(recomputed),
        "receipts": captures,
        "epochs_settled": len(settled),
        "addresses_on_chain": len(expected),
    }
    return report


def prove(journal: Journal, settler: Settler, session: Any, guid: str) -> dict[str, Any]:
    """Prove one query's receipt against its epoch's root, locally and on chain."""
    txn = journal.get("capture", guid)
    if txn is None:
        raise LedgerError("unknown_receipt", f"no paid query with guid {guid!r}", "see `mtor ledger history`")
    epoch = next((e for e in settler.epochs() if e.first_txn < txn.id <= e.last_txn), None)
    if epoch is None or epoch.state != SETTLED:
        raise LedgerError(
            "not_settled", f"the receipt of {guid} is not settled yet", "run `mtor ledger settle` first"
        )
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
        "time": r.time,
        "leaf": "0x" + lv[index].hex(),
        "proof": ["0x" + p.hex() for p in path],
        "root": "0x" + epoch.root.hex(),
        "valid_locally": local,
        "valid_on_chain": on_chain,
        "valid": local and on_chain,
    }

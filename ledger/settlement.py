"""Settlement: the journal's paid queries, one ``settle`` transaction per epoch.

An epoch is the run of capture transactions (receipts) after the previous
epoch. Closing it fixes its contents in the ``epochs`` table — receipts,
Merkle root, each payer's debit, each worker's credit, the realm fee — before
anything is sent, so a retry sends exactly the same epoch. Submitting checks
the chain first: an epoch the chain already has (the previous attempt went
through but its answer was lost) is confirmed by its root instead of being
sent again. While the chain is unreachable, queries go on accruing into the
next epoch; the pending epoch goes first once the chain is back.

Gas grows with the epoch's payers and workers, never with its queries:
entries are netted per address and packed one word each,
``(amount << 160) | address``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ledger import merkle
from ledger.errors import ChainError
from ledger.journal import Journal, Receipt

PENDING = "pending"
SETTLED = "settled"


@dataclass(frozen=True)
class Epoch:
    number: int
    first_txn: int  # exclusive
    last_txn: int  # inclusive
    receipts: int
    root: bytes
    debits: dict[str, int]
    credits: dict[str, int]
    fee: int
    state: str
    tx_hash: str | None = None

    @property
    def debited(self) -> int:
        return sum(self.debits.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.number,
            "receipts": self.receipts,
            "root": "0x" + self.root.hex(),
            "debited": self.debited,
            "credited": sum(self.credits.values()),
            "fee": self.fee,
            "payers": len(self.debits),
            "workers": len(self.credits),
            "state": self.state,
            "tx_hash": self.tx_hash,
        }


def leaves(receipts: list[Receipt]) -> list[bytes]:
    return [merkle.receipt_leaf(r.guid, r.payer, r.worker, r.amount, r.time) for r in receipts]


def net(receipts: list[Receipt]) -> tuple[dict[str, int], dict[str, int], int]:
    debits: dict[str, int] = {}
    credits: dict[str, int] = {}
    fee = 0
    for r in receipts:
        if r.amount:
            debits[r.payer] = debits.get(r.payer, 0) + r.amount
        if r.amount - r.fee:
            credits[r.worker] = credits.get(r.worker, 0) + r.amount - r.fee
        fee += r.fee
    return debits, credits, fee


def pack(entries: dict[str, int]) -> list[int]:
    return [(amount << 160) | int(address, 16) for address, amount in sorted(entries.items())]


class Settler:
    def __init__(self, journal: Journal, *, epoch_seconds: float = 60.0, epoch_queries: int = 1000) -> None:
        self.journal = journal
        self.epoch_seconds = epoch_seconds
        self.epoch_queries = epoch_queries

    # --- epochs in the journal ---------------------------------------------------

    def epochs(self) -> list[Epoch]:
        rows = self.journal.execute("SELECT number FROM epochs ORDER BY number").fetchall()
        return [e for (n,) in rows if (e := self.epoch(n)) is not None]

    def epoch(self, number: int) -> Epoch | None:
        row = self.journal.execute(
            "SELECT number, first_txn, last_txn, receipts, root, state, tx_hash, fee FROM epochs WHERE number = ?",
            (number,),
        ).fetchone()
        if row is None:
            return None
        receipts = self.journal.receipts(row[1], row[2])
        debits, credits, _ = net(receipts)
        return Epoch(row[0], row[1], row[2], row[3], bytes.fromhex(row[4]), debits, credits, int(row[7]), row[5], row[6])

    def _last(self) -> tuple[int, int, float]:
        row = self.journal.execute(
            "SELECT number, last_txn, created FROM epochs ORDER BY number DESC LIMIT 1"
        ).fetchone()
        return (0, 0, 0.0) if row is None else (int(row[0]), int(row[1]), float(row[2]))

    def pending(self) -> Epoch | None:
        row = self.journal.execute(
            "SELECT number FROM epochs WHERE state = ? ORDER BY number LIMIT 1", (PENDING,)
        ).fetchone()
        return None if row is None else self.epoch(int(row[0]))

    def unsettled_receipts(self) -> int:
        _, last_txn, _ = self._last()
        return self.journal.count("capture", last_txn)

    def due(self, now: float | None = None) -> bool:
        """Time to settle: an epoch waits, or enough queries, or enough time since the last."""
        if self.pending() is not None:
            return True
        n = self.unsettled_receipts()
        if n == 0:
            return False
        _, _, created = self._last()
        if created == 0.0:
            first = self.journal.execute(
                "SELECT min(time) FROM txns WHERE kind = 'capture'"
            ).fetchone()[0]
            created = float(first or 0.0)
        return n >= self.epoch_queries or (now or time.time()) - created >= self.epoch_seconds

    def close_epoch(self) -> Epoch | None:
        """Fix the next epoch's contents (or return the one still pending)."""
        with self.journal.atomic():
            waiting = self.pending()
            if waiting is not None:
                return waiting
            number, after, _ = self._last()
            upto = self.journal.last_txn_id()
            receipts = self.journal.receipts(after, upto)
            if not receipts:
                return None
            debits, credits, fee = net(receipts)
            root = merkle.root(leaves(receipts))
            self.journal.execute(
                "INSERT INTO epochs(number, first_txn, last_txn, receipts, root, debited, credited, fee,"
                " state, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    number + 1,
                    after,
                    upto,
                    len(receipts),
                    root.hex(),
                    str(sum(debits.values())),
                    str(sum(credits.values())),
                    str(fee),
                    PENDING,
                    time.time(),
                ),
            )
        return self.epoch(number + 1)

    def _mark_settled(self, number: int, tx_hash: str | None) -> None:
        with self.journal.atomic():
            self.journal.execute(
                "UPDATE epochs SET state = ?, tx_hash = ?, settled = ? WHERE number = ?",
                (SETTLED, tx_hash, time.time(), number),
            )

    # --- the chain ----------------------------------------------------------------

    def submit(self, session: Any, epoch: Epoch) -> Epoch:
        """Put ``epoch`` on chain exactly once."""
        ledger = session.ledger
        on_chain = int(session.chain._call(lambda: ledger.functions.lastEpoch().call()))
        if on_chain >= epoch.number:
            root = bytes(session.chain._call(lambda: ledger.functions.receiptsRoot(epoch.number).call()))
            if root != epoch.root:
                raise ChainError(
                    "epoch_mismatch",
                    f"epoch {epoch.number} on chain has root 0x{root.hex()}, the journal 0x{epoch.root.hex()}",
                    "the chain was settled by someone else; run `mtor ledger audit`",
                )
            self._mark_settled(epoch.number, _settle_tx(session, epoch.number))
        elif on_chain == epoch.number - 1:
            fn = ledger.functions.settle(
                epoch.number, epoch.root, epoch.receipts, pack(epoch.debits), pack(epoch.credits), epoch.fee
            )
            receipt = session.chain.transact(session.operator, fn, what=f"settling epoch {epoch.number}")
            self._mark_settled(epoch.number, receipt["transactionHash"].to_0x_hex())
        else:
            raise ChainError(
                "epoch_mismatch",
                f"the chain is at epoch {on_chain}, the journal wants to settle {epoch.number}",
                "run `mtor ledger audit`",
            )
        settled = self.epoch(epoch.number)
        assert settled is not None
        return settled

    def settle(self, session: Any) -> list[Epoch]:
        """Settle the pending epoch, then the receipts since; returns what was settled."""
        done: list[Epoch] = []
        while True:
            epoch = self.close_epoch()
            if epoch is None:
                return done
            done.append(self.submit(session, epoch))
            if self.unsettled_receipts() == 0:
                return done


def _settle_tx(session: Any, number: int) -> str | None:
    logs = session.chain._call(
        lambda: session.ledger.events.Settled.get_logs(
            from_block=session.deployment.block, argument_filters={"epoch": number}
        )
    )
    return logs[0]["transactionHash"].to_0x_hex() if logs else None

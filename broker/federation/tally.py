"""What each pair of realms owes the other: receipts, audits, acknowledgements, credit.

For every peer a realm keeps two running totals, both only ever growing:

- as the **payer** (it forwarded intents to the peer): the cost of the
  peer's receipts it accepted. Each receipt is audited when it arrives: it
  must be for an intent this realm forwarded and have no receipt yet, and
  cost at most the price this realm offered; a receipt that fails is
  *disputed*, left out of the total, and the peer is quarantined. After each
  batch the realm sends an ``ack`` carrying the new total: its signed word
  that it owes that much, which the peer can settle against.
- as the **payee** (it served the peer's intents): the cost of the receipts
  it gave, the peer's latest acknowledged total, and what was settled. The
  peer may owe at most its credit limit unsettled (intents in flight
  included); past it, its forwards are refused with ``peer_credit_exceeded``.

Receipt evidence (the frame and the envelope's proof) is kept in the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.federation.store import ACCEPTED, DISPUTED, PAYEE, PAYER, AckIn, FederationStore, ReceiptIn, ReceiptOut
from broker.protocol import Ack, Receipt


@dataclass
class PayerTally:
    """This realm's side as the one that pays ``peer``."""

    accepted: int = 0  # cost of accepted receipts, in all
    accepted_count: int = 0
    disputed: int = 0  # cost of disputed receipts, in all (left out of `accepted`)
    disputed_count: int = 0
    last_seq: int = 0  # the highest receipt seq processed
    unacked: bool = False  # receipts processed since the last ack
    disputed_since_ack: list[str] = field(default_factory=list)
    settled: int = 0  # paid on chain, in all


@dataclass
class PayeeTally:
    """This realm's side as the one ``peer`` pays."""

    limit: int = 0  # the peer's credit limit
    charged: int = 0  # cost of the receipts given, in all
    last_seq: int = 0
    acked_seq: int = 0  # the peer's latest ack
    acked_total: int = 0
    settled: int = 0  # received on chain, in all
    inflight: dict[str, int] = field(default_factory=dict)  # journal guid -> price held

    def used(self) -> int:
        """What the peer owes unsettled, counting its intents in flight at their price."""
        return self.charged - self.settled + sum(self.inflight.values())


class Tallies:
    def __init__(self, store: FederationStore) -> None:
        self._store = store
        self._payer: dict[str, PayerTally] = {}
        self._payee: dict[str, PayeeTally] = {}

    def payer(self, peer: str) -> PayerTally:
        tally = self._payer.get(peer)
        if tally is None:
            tally = self._payer[peer] = PayerTally(settled=self._store.settled(peer, PAYER))
            for r in self._store.receipts_in(peer):
                if r.status == ACCEPTED:
                    tally.accepted += r.cost
                    tally.accepted_count += 1
                else:
                    tally.disputed += r.cost
                    tally.disputed_count += 1
                tally.last_seq = max(tally.last_seq, r.seq)
        return tally

    def payee(self, peer: str, limit: int | None = None) -> PayeeTally:
        tally = self._payee.get(peer)
        if tally is None:
            seq, total = self._store.last_receipt_out(peer)
            ack = self._store.ack_in(peer)
            tally = self._payee[peer] = PayeeTally(
                charged=total,
                last_seq=seq,
                acked_seq=ack.seq if ack else 0,
                acked_total=ack.total if ack else 0,
                settled=self._store.settled(peer, PAYEE),
            )
        if limit is not None:
            tally.limit = limit
        return tally

    # --- payer side -------------------------------------------------------

    def audit(self, peer: str, receipt: Receipt, frame: bytes, proof_ref: str, max_price: int | None,
              forwarded: bool) -> str | None:
        """Book a receipt from ``peer``; returns why it is disputed, or None
        (accepted, or a copy of one already booked: never counted twice).
        ``proof_ref``: the stored proof of the envelope it came in."""
        tally = self.payer(peer)
        reason = ""
        if not forwarded:
            reason = "a receipt for an intent this realm never forwarded"
        elif receipt.cost < 0:
            reason = f"a negative cost {receipt.cost}"
        elif max_price is not None and receipt.cost > max_price:
            reason = f"cost {receipt.cost} above the price offered, {max_price}"
        status = DISPUTED if reason else ACCEPTED
        tally.unacked = True  # a copy (the peer missed our ack) is acknowledged again
        booked = self._store.add_receipt_in(
            ReceiptIn(peer, receipt.guid, receipt.seq, receipt.worker, receipt.cost, receipt.total, status, reason,
                      frame.decode(), proof_ref)
        )
        if not booked:
            return None
        tally.last_seq = max(tally.last_seq, receipt.seq)
        if reason:
            tally.disputed += max(receipt.cost, 0)
            tally.disputed_count += 1
            tally.disputed_since_ack.append(receipt.guid)
            return reason
        tally.accepted += receipt.cost
        tally.accepted_count += 1
        return None

    def ack(self, peer: str) -> Ack | None:
        """The ack to send ``peer`` now, or None when nothing changed since the last."""
        tally = self.payer(peer)
        if not tally.unacked:
            return None
        tally.unacked = False
        disputed, tally.disputed_since_ack = tally.disputed_since_ack, []
        return Ack(seq=tally.last_seq, total=tally.accepted, disputed=disputed)

    # --- payee side -------------------------------------------------------

    def receipt_for(self, peer: str, guid: str, journal_guid: str, worker: str, cost: int, replayed: bool) -> Receipt:
        """The receipt for a served intent: the one already given for ``guid``
        (a replayed result: never charged twice), or the next one."""
        tally = self.payee(peer)
        tally.inflight.pop(journal_guid, None)
        old = self._store.receipt_out(peer, guid) if replayed else None
        if old is None:
            receipt = ReceiptOut(peer, guid, tally.last_seq + 1, journal_guid, worker, cost, tally.charged + cost)
            if self._store.add_receipt_out(receipt):
                tally.last_seq, tally.charged = receipt.seq, receipt.total
                return Receipt(guid=guid, worker=worker, cost=cost, seq=receipt.seq, total=receipt.total)
            old = self._store.receipt_out(peer, guid)
            assert old is not None  # the insert failed on its guid
        return Receipt(guid=guid, worker=old.worker, cost=old.cost, seq=old.seq, total=old.total)

    def unacked_receipts(self, peer: str) -> list[Receipt]:
        """Receipts the peer has not acknowledged (sent again when it reconnects)."""
        tally = self.payee(peer)
        return [
            Receipt(guid=r.guid, worker=r.worker, cost=r.cost, seq=r.seq, total=r.total)
            for r in self._store.receipts_out(peer, tally.acked_seq)
        ]

    def acked(self, peer: str, ack: Ack, frame: bytes, proof_ref: str) -> str | None:
        """Book the peer's ack; returns why it was ignored, or None."""
        tally = self.payee(peer)
        if ack.seq < tally.acked_seq or ack.total < tally.acked_total:
            return f"ack {ack.seq}/{ack.total} goes back from {tally.acked_seq}/{tally.acked_total}"
        if ack.seq > tally.last_seq:
            return f"ack of receipt {ack.seq}, but the last one given is {tally.last_seq}"
        tally.acked_seq, tally.acked_total = ack.seq, ack.total
        self._store.set_ack_in(AckIn(peer, ack.seq, ack.total, frame.decode(), proof_ref))
        return None

    def reload_settled(self, peer: str) -> None:
        """Take up the settlements recorded since (`mtor federation settle` records them)."""
        self.payer(peer).settled = self._store.settled(peer, PAYER)
        self.payee(peer).settled = self._store.settled(peer, PAYEE)

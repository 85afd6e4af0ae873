"""Settlement: the journal's paid queries, put on chain epoch by epoch, in bounded transactions.

An epoch is a run of journal transactions holding at most ``epoch_queries``
captures (query receipts). Closing it fixes, in the ``epochs`` table and in a
receipts file published under ``<ledger>/epochs/`` (``N.json``: every receipt,
the roots, the journal head; ``N.earnings.json``: every worker's cumulative
earnings, for proofs), before anything is sent:

- the Merkle root of its receipts;
- the Merkle root of every worker's cumulative earnings up to its last
  transaction, and their total;
- the hash of its last journal row (the journal head), anchored on chain.

The roots are built from rows that are already committed and never change, so
nothing of it runs under the journal's write lock; only the epoch row is
written under it.

Sending an epoch is two steps. First ``redeem``: per payer of the epoch, the
chain takes what the journal charged in all (captures minus shortfalls), under
the highest valid signed authorisation of that payer, in batches that each stay
under the gas cap (halved until they fit). Cumulative amounts make a retry
harmless. A payer that cannot be collected from — no valid authorisation that
covers it, a deposit that no longer covers it (an exit finished, a refund) — is
booked as a ``shortfall``: the realm's fee gives the payer back what it could
not collect, so that workers are still paid in full. If that takes the fee
below zero the realm must cover the loss before the roots go out (on a dev
chain the owner mints it; elsewhere the epoch waits, the upkeep reports it and
the audit shows it; the other payers were redeemed all the same). Then
``settle`` posts the roots, once.
An epoch the chain already has (the answer was lost) is recognised by its root.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import accounts as A
from ledger import authorisation as auth
from ledger import merkle
from ledger.errors import ChainError
from ledger.journal import Journal, Receipt
from ledger.units import format_amount

log = logging.getLogger("mtor.ledger")

CLOSED = "closed"
SETTLED = "settled"
REDEEM_GAS_PER_PAYER = 13_000  # a little above the measured ~11.8k: the first batch size to try
READ_CHUNK = 500  # addresses per accountsOf call


@dataclass(frozen=True)
class Epoch:
    number: int
    first_txn: int  # exclusive
    last_txn: int  # inclusive
    receipts: int
    root: bytes
    earnings_root: bytes
    earnings_total: int
    journal_head: bytes
    state: str
    tx_hash: str | None = None
    created: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.number,
            "first_txn": self.first_txn,
            "last_txn": self.last_txn,
            "receipts": self.receipts,
            "root": "0x" + self.root.hex(),
            "earnings_root": "0x" + self.earnings_root.hex(),
            "earnings_total": self.earnings_total,
            "journal_head": "0x" + self.journal_head.hex(),
            "state": self.state,
            "tx_hash": self.tx_hash,
        }


def leaves(receipts: list[Receipt]) -> list[bytes]:
    return [merkle.receipt_leaf(r.guid, r.payer, r.worker, r.amount, r.fee, r.time) for r in receipts]


def add_earnings(earned: dict[str, int], receipts: list[Receipt]) -> dict[str, int]:
    """``earned`` plus each receipt's worker part (what it cost less the realm's fee)."""
    for r in receipts:
        if r.amount - r.fee:
            earned[r.worker] = earned.get(r.worker, 0) + r.amount - r.fee
    return earned


class AuthIndex:
    """The highest spending authorisations each payer presented, read from hold rows.

    Kept incrementally (only holds since the last look are read), the top few
    per payer: the highest valid one is what a redemption needs.
    """

    KEEP = 8

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._top: dict[str, list[tuple[int, str]]] = {}
        self._after = 0
        self._valid: dict[tuple[str, int, str], bool] = {}

    def refresh(self) -> None:
        for txn, payer, text in self.journal.hold_authorisations(self._after):
            self._after = txn
            try:
                total, signature = auth.decode(text)
            except ValueError:
                continue
            top = self._top.setdefault(payer, [])
            if (total, signature) not in top:
                top.append((total, signature))
                top.sort(reverse=True)
                del top[self.KEEP :]

    def best(self, terms: auth.Terms, payer: str) -> tuple[int, str] | None:
        """The payer's highest authorisation whose signature is valid, or None."""
        for total, signature in self._top.get(payer, ()):
            key = (payer, total, signature)
            ok = self._valid.get(key)
            if ok is None:
                ok = self._valid[key] = auth.verify(terms, payer, total, signature)
            if ok:
                return total, signature
        return None


class Settler:
    def __init__(
        self,
        journal: Journal,
        folder: Path,
        *,
        epoch_seconds: float = 60.0,
        epoch_queries: int = 10_000,
    ) -> None:
        self.journal = journal
        self.folder = folder  # the published receipts files
        self.epoch_seconds = epoch_seconds
        self.epoch_queries = max(1, epoch_queries)
        self.auths = AuthIndex(journal)
        # cumulative worker earnings as of a txn id, extended epoch by epoch
        self._earned: tuple[int, dict[str, int]] = (0, {})
        self._batch: int | None = None  # redemptions per transaction that fitted the gas cap

    # --- epochs in the journal ---------------------------------------------------

    def epochs(self) -> list[Epoch]:
        return [_epoch(r) for r in self.journal.epoch_rows()]

    def epoch(self, number: int) -> Epoch | None:
        row = self.journal.epoch_row(number)
        return None if row is None else _epoch(row)

    def pending(self) -> list[Epoch]:
        """Closed epochs not on chain yet, oldest first."""
        return [_epoch(r) for r in self.journal.epoch_rows(CLOSED)]

    def last_settled(self) -> Epoch | None:
        row = self.journal.last_epoch_row(SETTLED)
        return None if row is None else _epoch(row)

    def _last(self) -> tuple[int, int]:
        row = self.journal.last_epoch_row()
        return (0, 0) if row is None else (int(row[0]), int(row[2]))

    def not_on_chain(self) -> tuple[int, float | None]:
        """How many receipts are not on chain yet, and when the oldest was written (unix time)."""
        settled = self.last_settled()
        after = settled.last_txn if settled is not None else 0
        return self.journal.count("capture", after), self.journal.first_time("capture", after)

    def wake_in(self, now: float | None = None) -> float | None:
        """Seconds until an epoch is due (0: now), None while there is nothing to settle."""
        if self.pending():
            return 0.0
        _, after = self._last()
        if self.journal.count("capture", after) >= self.epoch_queries:
            return 0.0
        first = self.journal.first_time("capture", after)
        if first is None:
            return None
        return max(0.0, first + self.epoch_seconds - (now or time.time()))

    def due(self, now: float | None = None) -> bool:
        return self.wake_in(now) == 0.0

    def close_epoch(self, *, force: bool = False, now: float | None = None) -> Epoch | None:
        """Fix the next epoch (at most ``epoch_queries`` receipts) if one is due, or
        whatever is unsettled with ``force``; None when there is nothing to close."""
        number, after = self._last()
        count = self.journal.count("capture", after)
        if count == 0:
            return None
        if not force:
            first = self.journal.first_time("capture", after) or 0.0
            if count < self.epoch_queries and (now or time.time()) - first < self.epoch_seconds:
                return None
        upto = self.journal.nth_id("capture", after, self.epoch_queries) if count > self.epoch_queries else None
        if upto is None:
            upto = self.journal.last_txn_id()
        receipts = self.journal.receipts(after, upto)
        root = merkle.root(leaves(receipts))
        earned = self.earnings_as_of(upto)
        accounts, tree = merkle.earnings_tree(earned)
        earnings_root = tree[-1][0] if accounts else merkle.ZERO_ROOT
        earnings_total = sum(earned[a] for a in accounts)
        head = self.journal.hash_at(upto)
        created = time.time()
        with self.journal.atomic():
            if self._last()[0] != number:
                return None  # another process closed it meanwhile (and published it)
            self.journal.add_epoch(
                (
                    number + 1,
                    after,
                    upto,
                    len(receipts),
                    root.hex(),
                    earnings_root.hex(),
                    str(earnings_total),
                    head.hex(),
                    CLOSED,
                    None,
                    created,
                )
            )
        # Published once the epoch is ours: a process that lost the race never overwrites them.
        self._publish(number + 1, after, upto, receipts, root, earned, earnings_root, earnings_total, head)
        return self.epoch(number + 1)

    def publish_missing(self, epoch: Epoch) -> None:
        """Write an epoch's files again if they are missing (a crash right after closing it)."""
        if self.receipts_file(epoch.number).exists() and self.earnings_file(epoch.number).exists():
            return
        receipts = self.journal.receipts(epoch.first_txn, epoch.last_txn)
        earned = self.earnings_as_of(epoch.last_txn)
        self._publish(
            epoch.number,
            epoch.first_txn,
            epoch.last_txn,
            receipts,
            epoch.root,
            earned,
            epoch.earnings_root,
            epoch.earnings_total,
            epoch.journal_head,
        )

    def earnings_as_of(self, upto: int) -> dict[str, int]:
        """Every worker's cumulative earnings from the captures up to txn ``upto``."""
        known, earned = self._earned
        if known > upto:
            known, earned = 0, {}
        earned = add_earnings(dict(earned), self.journal.receipts(known, upto))
        self._earned = (upto, earned)
        return earned

    # --- the published files ------------------------------------------------------

    def receipts_file(self, number: int) -> Path:
        return self.folder / f"{number}.json"

    def earnings_file(self, number: int) -> Path:
        return self.folder / f"{number}.earnings.json"

    def _publish(
        self,
        number: int,
        after: int,
        upto: int,
        receipts: list[Receipt],
        root: bytes,
        earned: dict[str, int],
        earnings_root: bytes,
        earnings_total: int,
        head: bytes,
    ) -> None:
        doc = {
            "epoch": number,
            "first_txn": after,
            "last_txn": upto,
            "receipts_root": "0x" + root.hex(),
            "earnings_root": "0x" + earnings_root.hex(),
            "earnings_total": str(earnings_total),
            "journal_head": "0x" + head.hex(),
            "leaf": "keccak256(keccak256(abi.encode(keccak256(guid), payer, worker, amount, fee, time)))",
            "receipts": [r.as_dict() for r in receipts],
        }
        _write_json(self.receipts_file(number), doc)
        _write_json(
            self.earnings_file(number),
            {
                "epoch": number,
                "earnings_root": doc["earnings_root"],
                "earnings_total": doc["earnings_total"],
                "leaf": "keccak256(keccak256(abi.encode(account, cumulative)))",
                "earnings": {a: str(v) for a, v in sorted(earned.items()) if v},
            },
        )

    def earnings_of(self, number: int) -> dict[str, int]:
        """The cumulative earnings an epoch's root covers (from its published file)."""
        try:
            data = json.loads(self.earnings_file(number).read_text())
        except FileNotFoundError:
            epoch = self.epoch(number)
            if epoch is None:
                raise
            return self.earnings_as_of(epoch.last_txn)
        return {a: int(v) for a, v in data["earnings"].items()}

    def prune(self) -> None:
        """Earnings files older than the last settled epoch are no longer needed for proofs
        (the receipts files stay: they are the public record)."""
        settled = self.last_settled()
        if settled is None:
            return
        for path in self.folder.glob("*.earnings.json"):
            number = int(path.name.split(".", 1)[0])
            if number < settled.number:
                path.unlink(missing_ok=True)

    # --- the chain ----------------------------------------------------------------

    def send(self, session: Any, epoch: Epoch) -> Epoch:
        """Put ``epoch`` on chain exactly once: redemptions, then the roots."""
        return self._send_all(session, [epoch])[0]

    def settle(self, session: Any, max_epochs: int | None = None) -> list[Epoch]:
        """Send the closed epochs in order (at most ``max_epochs``: a backlog goes in bounded steps)."""
        pending = self.pending()
        if max_epochs is not None:
            pending = pending[:max_epochs]
        for epoch in pending:
            self.publish_missing(epoch)
        done = self._send_all(session, pending) if pending else []
        if done:
            self.prune()
        return done

    def _send_all(self, session: Any, epochs: list[Epoch]) -> list[Epoch]:
        """Redeem once for every payer of ``epochs`` (cumulative: what they were charged
        up to now), back any loss, then post each epoch's roots in order."""
        ledger = session.ledger
        call = session.chain._call
        on_chain = int(call(lambda: ledger.functions.lastEpoch().call()))
        done: list[Epoch] = []
        fresh: list[Epoch] = []
        for epoch in epochs:
            if on_chain >= epoch.number:  # sent before, its answer lost
                root = bytes(call(lambda n=epoch.number: ledger.functions.receiptsRoot(n).call()))
                if root != epoch.root:
                    raise ChainError(
                        "epoch_mismatch",
                        f"epoch {epoch.number} on chain has root 0x{root.hex()}, the journal 0x{epoch.root.hex()}",
                        "the chain was settled by someone else; run `mtor ledger audit`",
                    )
                done.append(self._mark_settled(epoch.number, _settle_tx(session, epoch.number)))
            else:
                fresh.append(epoch)
        if not fresh:
            return done
        if on_chain != fresh[0].number - 1:
            raise ChainError(
                "epoch_mismatch",
                f"the chain is at epoch {on_chain}, the journal wants to settle {fresh[0].number}",
                "run `mtor ledger audit`",
            )
        self.redeem(session, self._payers(fresh[0].first_txn, fresh[-1].last_txn))
        self._back(session)
        available = self._available(session)
        for epoch in fresh:
            self._await_peers(epoch.earnings_total, available)  # the backed epochs before it went out
            fn = ledger.functions.settle(
                epoch.number,
                epoch.root,
                epoch.receipts,
                epoch.earnings_root,
                epoch.earnings_total,
                epoch.journal_head,
            )
            receipt = session.chain.transact(session.settler, fn, what=f"settling epoch {epoch.number}")
            done.append(self._mark_settled(epoch.number, receipt["transactionHash"].to_0x_hex()))
        return done

    def _payers(self, after: int, upto: int) -> list[str]:
        # A peer realm pays on credit, from its escrow on its own ledger: nothing to redeem here.
        return [p for p in self.journal.capture_payers(after, upto) if not self.journal.touched(A.realm(p))]

    def redeem(self, session: Any, payers: list[str]) -> int:
        """Collect on chain what ``payers`` were charged; returns the number of redemptions sent."""
        terms = session.deployment.terms()
        self.auths.refresh()
        entries = []
        for payer, deposit, spent in self._on_chain(session, payers):
            target = self.journal.charged(payer)
            if target <= spent:
                continue
            best = self.auths.best(terms, payer)
            authorised = best[0] if best is not None else spent
            if target > authorised:
                target -= self._shortfall(
                    session, payer, target - max(authorised, spent), "charged beyond the payer's valid authorisation"
                )
            if target - spent > deposit:
                target -= self._shortfall(session, payer, target - spent - deposit, "the deposit does not cover it")
            if target > spent and best is not None:
                r, vs = auth.compact(best[1])
                entries.append((payer, target, best[0], r, vs, spent))
        entries.sort(key=lambda e: int(e[0], 16))
        self._send_batches(session, entries)
        return len(entries)

    def _on_chain(self, session: Any, payers: list[str]) -> list[tuple[str, int, int]]:
        out: list[tuple[str, int, int]] = []
        fn = session.ledger.functions.accountsOf
        for i in range(0, len(payers), READ_CHUNK):
            chunk = payers[i : i + READ_CHUNK]
            deposits, spent, _ = session.chain._call(lambda c=chunk: fn(c).call())
            out.extend(zip(chunk, (int(d) for d in deposits), (int(s) for s in spent), strict=True))
        return out

    def _send_batches(self, session: Any, entries: list[tuple[str, int, int, bytes, bytes, int]]) -> None:
        from web3.logs import DISCARD

        size = self._batch or max(1, session.chain.gas_cap // REDEEM_GAS_PER_PAYER)
        i = 0
        while i < len(entries):
            batch = entries[i : i + size]
            fn = session.ledger.functions.redeem([(p, c, a, r, vs) for p, c, a, r, vs, _ in batch])
            try:
                rc = session.chain.transact(session.settler, fn, what=f"redeeming {len(batch)} payers")
            except ChainError as exc:
                if exc.code == "over_gas_cap" and size > 1:
                    size = max(1, size // 2)
                    continue
                raise
            self._batch = size
            spent = {p: s for p, _, _, _, _, s in batch}
            charged = {p: c for p, c, _, _, _, _ in batch}
            for ev in session.ledger.events.RedemptionSkipped().process_receipt(rc, errors=DISCARD):
                payer, reason = ev["args"]["payer"], int(ev["args"]["reason"])
                if reason == 0:  # Stale: already redeemed, by a previous attempt
                    continue
                why = {1: "over the signed total", 2: "the deposit no longer covers it", 3: "a bad signature"}
                self._shortfall(session, payer, charged[payer] - spent[payer], f"the chain refused it: {why[reason]}")
            i += len(batch)

    def _shortfall(self, session: Any, payer: str, amount: int, why: str) -> int:
        """Book that ``amount`` of ``payer``'s charges cannot be collected: the realm's fee
        gives it back (below zero if it must: the realm then owes it, see :meth:`_back`),
        so workers are still paid. Returns ``amount``."""
        if amount <= 0:
            return 0
        ref = f"{payer}:{self.journal.charged(payer)}:{amount}"
        entries = ((A.FEE, -amount), (A.user(payer), amount))
        self.journal.post("shortfall", ref, entries, payer=payer, amount=amount, memo=why, overdraw=A.FEE)
        log.warning("shortfall: %s of %s's charges could not be collected (%s)", amount, payer, why)
        return amount

    def _back(self, session: Any) -> None:
        """A realm fee below zero is a loss the realm must cover before workers' earnings
        can be posted (dev chains: the owner mints it; elsewhere the epoch waits)."""
        owed = -self.journal.balance(A.FEE)
        if owed <= 0:
            return
        if not session.cover(owed):
            raise ChainError(
                "unbacked",
                f"the realm owes {owed} base units it could not collect from payers; workers' earnings"
                " cannot be posted until it is covered",
                "send the amount with RealmLedger.cover() from any wallet (approve first); the upkeep then settles",
            )

    def _available(self, session: Any) -> int:
        """What backs workers' earnings on chain: collected, less the fee paid out."""
        call, ledger = session.chain._call, session.ledger
        return int(call(lambda: ledger.functions.collected().call())) - int(
            call(lambda: ledger.functions.feePaid().call())
        )

    def _await_peers(self, earnings_total: int, available: int) -> None:
        """Earnings of intents served for peer realms are backed once those realms' payments
        are credited to this ledger (``creditFromRealm``): until then the epoch waits, as the
        contract would refuse its root (``Unbacked``); other realms' debts are not the fee's."""
        if earnings_total <= available:
            return
        owed = self.journal.peers_owe()
        if not owed:
            return  # a loss of the realm's own: the contract says so (`_back` covered what it could)
        who = ", ".join(f"{p} owes {format_amount(v)}" for p, v in sorted(owed.items()))
        raise ChainError(
            "awaiting_peer_payment",
            f"workers' earnings of {format_amount(earnings_total)} $9000 are backed by"
            f" {format_amount(available)} on chain; peer realms have not paid yet ({who})",
            "claim from their escrow with `mtor federation settle PEER`; the upkeep then settles",
        )

    def _mark_settled(self, number: int, tx_hash: str | None) -> Epoch:
        self.journal.set_epoch_settled(number, SETTLED, tx_hash, time.time())
        settled = self.epoch(number)
        assert settled is not None
        return settled


def _epoch(r: Any) -> Epoch:
    return Epoch(
        number=int(r[0]),
        first_txn=int(r[1]),
        last_txn=int(r[2]),
        receipts=int(r[3]),
        root=bytes.fromhex(r[4]),
        earnings_root=bytes.fromhex(r[5]),
        earnings_total=int(r[6]),
        journal_head=bytes.fromhex(r[7]),
        state=r[8],
        tx_hash=r[9],
        created=float(r[10]),
    )


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def _settle_tx(session: Any, number: int) -> str | None:
    logs = session.chain._call(
        lambda: session.ledger.events.Settled.get_logs(
            from_block=session.deployment.block, argument_filters={"epoch": number}
        )
    )
    return logs[0]["transactionHash"].to_0x_hex() if logs else None

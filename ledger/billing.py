"""Pay per query: the broker's ``Billing`` protocol on top of the journal.

- ``quote`` prices the most an intent can cost (the hold);
- ``hold`` moves that much from ``user:A`` to ``hold:A`` when the intent is
  accepted, if the payer's signed spending authorisation covers everything it
  has spent and holds plus this hold; otherwise it refuses
  (``bad_authorisation``, with what would be accepted) or raises
  InsufficientFunds: nothing is dispatched unpaid or unauthorised;
- ``capture`` turns the hold into the worker's earning plus the realm fee;
  usage may cost less than the hold (never more, never below zero), the rest
  goes back;
- ``release`` gives the whole hold back (failure, cancel, timeout).

Time in the queue is never priced: the cost depends on usage only.

Signatures are checked lazily: the first authorisation of each payer (in this
process), and again whenever what the payer presented but nobody verified
exceeds ``unverified_limit``. A hostile client can thus get at most that much
served against a bad signature; settlement redeems only verified ones.

The ledger does not import the broker; the broker's exception classes are
passed in (``insufficient_funds=``, ``refused=``) by whoever wires them together.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ledger import accounts as A
from ledger import authorisation as auth
from ledger.errors import InsufficientFunds, PaymentRefused
from ledger.journal import Journal, Overdraft
from ledger.pricing import PriceTable
from ledger.units import ONE, format_amount

log = logging.getLogger("mtor.ledger")

STATUS_KEY = "upkeep"  # where the upkeep records its state in the journal's meta table
UNVERIFIED_LIMIT = ONE  # base units a payer may have presented unverified
_SIGNATURE_CHARS = 132  # 0x + 65 bytes


class RealmBilling:
    def __init__(
        self,
        journal: Journal,
        prices: PriceTable | None = None,
        *,
        terms: Callable[[], auth.Terms | None],
        insufficient_funds: Callable[[int, int], Exception] = InsufficientFunds,
        refused: Callable[..., Exception] = PaymentRefused,
        welcome_grant: int = 0,
        on_activity: Callable[[], None] | None = None,
        epoch_queries: int = 10_000,
        unverified_limit: int = UNVERIFIED_LIMIT,
        process_status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """``terms()`` is the realm's chain and contract (None until deployed).
        ``welcome_grant``: base units a user the journal never saw gets on its
        first query (dev realms), escrowed on chain later by the upkeep.
        ``on_activity()`` wakes the upkeep: a grant to escrow, an epoch filling up;
        ``process_status()`` says whether its process runs (for :meth:`status`)."""
        self.journal = journal
        self.prices = prices or PriceTable()
        self._terms = terms
        self._insufficient = insufficient_funds
        self._refused = refused
        self.welcome_grant = welcome_grant
        self._on_activity = on_activity
        self._epoch_queries = max(1, epoch_queries)
        self._unverified_limit = unverified_limit
        self._verified: dict[str, int] = {}  # payer -> highest total whose signature was checked
        self._since_poke = 0
        self._process_status = process_status
        self.failures = 0  # captures and releases that could not be written (logged)

    def quote(self, user: str, intent: str, model: str | None, params: dict[str, Any]) -> int:
        return self.prices.quote(intent, params)

    def commit(self) -> None:
        self.journal.commit()

    def terms(self, user: str) -> dict[str, Any] | None:
        """What a client signs for: the realm's chain and contract, what ``user`` has
        already committed (spent plus held) that a new authorisation must cover, and
        each intent's hold with default parameters."""
        terms = self._terms()
        if terms is None:
            return None
        return {
            "chain_id": terms.chain_id,
            "contract": terms.contract,
            "committed": self.journal.committed(user),
            "quotes": {intent: self.prices.quote(intent, {}) for intent in self.prices.rules},
        }

    # --- hold ---------------------------------------------------------------------------

    def hold(self, user: str, guid: str, amount: int, authorisation: Any = None) -> None:
        """Hold ``amount`` for ``guid``; ``authorisation`` has ``total`` and ``signature``."""
        if amount < 0:
            raise ValueError(f"negative hold {amount}")
        if amount == 0:
            return
        held, exiting, committed = self.journal.before_hold(guid, user)
        if held:
            return  # the same intent resubmitted or requeued: already held
        if exiting:
            raise self._refused(
                "exit_pending",
                f"{user} started leaving the realm: no new spending until the exit is finished or cancelled",
                "finish with `mtor wallet exit --finish` after the window, or `mtor wallet exit --cancel`",
            )
        total, signature = self._authorised(user, amount, committed, authorisation)
        stored = auth.encode(total, signature)
        try:
            self.journal.post_hold(guid, user, amount, stored)
        except Overdraft as exc:
            if not self._grant(user):
                raise self._insufficient(exc.balance, amount) from None
            try:
                self.journal.post_hold(guid, user, amount, stored)
            except Overdraft as again:
                raise self._insufficient(again.balance, amount) from None

    def _authorised(self, user: str, amount: int, committed: int, authorisation: Any) -> tuple[int, str]:
        """The authorisation's (total, signature) if it covers ``committed`` and this hold, else refuse."""
        terms = self._terms()
        if terms is None:
            raise self._refused(
                "bad_authorisation",
                "the realm's ledger has no contract to sign for yet",
                "it is being deployed; retry in a moment",
            )
        needed = committed + amount
        total = getattr(authorisation, "total", None)
        signature = getattr(authorisation, "signature", None)
        if not isinstance(total, int) or isinstance(total, bool) or total < needed:
            what = "no spending authorisation" if authorisation is None else f"an authorisation of {total}"
            raise self._refused(
                "bad_authorisation",
                f"this paid realm needs your signed authorisation of at least {format_amount(needed)} $9000"
                f" in all; the query carried {what}",
                "mtor and the client SDK sign it by themselves; other clients sign "
                "Spend(payer, total) under the EIP-712 domain in `detail` (see docs/ledger.md)",
                needed=needed,
                committed=needed - amount,
                chain_id=terms.chain_id,
                contract=terms.contract,
            )
        if not isinstance(signature, str) or len(signature) != _SIGNATURE_CHARS:
            raise self._bad_signature(user, terms, needed)
        verified = self._verified.get(user)
        if verified is None or total - verified > self._unverified_limit:
            if not auth.verify(terms, user, total, signature):
                raise self._bad_signature(user, terms, needed)
            self._verified[user] = total
        return total, signature

    def _bad_signature(self, user: str, terms: auth.Terms, needed: int) -> Exception:
        return self._refused(
            "bad_authorisation",
            f"the spending authorisation is not signed by {user} for this realm",
            f"sign Spend(payer, total) under chain {terms.chain_id}, contract {terms.contract}",
            needed=needed,
            chain_id=terms.chain_id,
            contract=terms.contract,
        )

    def _grant(self, user: str) -> bool:
        """A dev realm's welcome grant for a user the journal never saw: spendable at once,
        escrowed on chain by the upkeep (``grants`` is what is promised and not escrowed yet)."""
        if self.welcome_grant <= 0 or self.journal.touched(A.user(user)):
            return False
        grant = self.welcome_grant
        txn = self.journal.post("welcome", user, ((A.GRANTS, -grant), (A.user(user), grant)), payer=user, amount=grant)
        if txn is None:
            return False  # granted before
        self._poke()
        return True

    # --- capture and release --------------------------------------------------------------

    def capture(self, guid: str, worker: str, intent: str, usage: Mapping[str, Any]) -> int:
        """Charge the finished intent; never raises (a failure is logged and counted,
        and the hold comes back when it expires)."""
        try:
            held = self.journal.open_hold(guid)
            if held is None:
                done = self.journal.get("capture", guid)  # a repeated capture: what was charged
                return (done.amount or 0) if done is not None else 0
            user, amount = held
            cost = self.prices.cost(intent, usage, amount)
            fee = self.prices.fee(cost)
            self.journal.post(
                "capture",
                guid,
                (
                    (A.hold(user), -amount),
                    (A.worker(worker), cost - fee),
                    (A.FEE, fee),
                    (A.user(user), amount - cost),
                ),
                payer=user,
                worker=worker,
                amount=cost,
                fee=fee,
                memo=intent,
            )
        except Exception:
            self.failures += 1
            log.exception("capture of %s failed; its hold returns to the payer when it expires", guid)
            return 0
        self._since_poke += 1
        if self._since_poke == 1 or self._since_poke >= self._epoch_queries:
            if self._since_poke >= self._epoch_queries:
                self._since_poke = 0
            self._poke()  # an epoch started (its timer), or filled up
        return cost

    def release(self, guid: str) -> None:
        try:
            held = self.journal.open_hold(guid)
            if held is None:
                return
            user, amount = held
            self.journal.post(
                "release", guid, ((A.hold(user), -amount), (A.user(user), amount)), payer=user, amount=amount
            )
        except Exception:
            self.failures += 1
            log.exception("release of %s failed; its hold returns to the payer when it expires", guid)

    def _poke(self) -> None:
        if self._on_activity is not None:
            self._on_activity()

    # --- views ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ledger's upkeep as ``/metrics`` and `mtor broker status` show it: its state as it
        last recorded it, its process, and what waits for settlement now."""
        try:
            upkeep = json.loads(self.journal.meta(STATUS_KEY) or "{}")
        except ValueError:
            upkeep = {}
        settled = self.journal.execute(
            "SELECT coalesce(max(last_txn), 0) FROM epochs WHERE state = 'settled'"
        ).fetchone()[0]
        waiting = self.journal.count("capture", int(settled))
        oldest = self.journal.first_time("capture", int(settled))
        out: dict[str, Any] = {
            "state": upkeep.get("state", "starting"),
            "failures": int(upkeep.get("failures", 0)),
            "consecutive_failures": int(upkeep.get("consecutive_failures", 0)),
            "last_error": upkeep.get("last_error"),
            "settled_epochs": int(
                self.journal.execute("SELECT count(*) FROM epochs WHERE state = 'settled'").fetchone()[0]
            ),
            "unsettled_receipts": waiting,
            "oldest_unsettled_s": 0.0 if oldest is None else max(0.0, time.time() - oldest),
            "capture_failures": self.failures,
        }
        if self._process_status is not None:
            out.update(self._process_status())
        return out

    def balance(self, user: str) -> int:
        """What the user can spend now (deposits credited, minus holds and spending)."""
        return self.journal.balance(A.user(user))

    def earnings(self, workers: list[str]) -> dict[str, int]:
        """Each worker's earnings not yet claimed, settled or not, by address."""
        found = self.journal.balances_of(A.worker(w) for w in workers)
        return {w: found[A.worker(w)] for w in workers}

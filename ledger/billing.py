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
- ``credit`` marks a payer as a pinned peer realm that pays on credit: its
  holds need no Spend authorisation (it has no deposit here); they spend the
  credit line the journal books for it (``realm:P`` -> ``user:P``, see
  ``ledger.accounts``), and what it pays on chain restores it.

Time in the queue is never priced: the cost depends on usage only.

Standing authorisations, for API keys (docs/openai.md): an HTTP client with
an API key cannot sign per query, so ``mtor keys create --limit L`` signs
once, for everything the payer committed, the unspent limits of its other
keys and ``L`` (:meth:`authorise`). The broker says what a payer's keys may
still spend (``reserved``, :meth:`set_reserved`); it is part of what every
authorisation must cover (``committed`` in :meth:`terms` and in a refusal's
``needed``), so no query of the SDK or of another key eats into a key's
limit. A key's request is held under the payer's highest authorisation
(:meth:`standing`): a signature still covers every base unit charged.

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
from ledger.journal import Journal, JournalUnavailable, Overdraft
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
        unavailable: Callable[[str, str], Exception] | None = None,
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
        ``process_status()`` says whether its process runs (for :meth:`status`).
        ``unavailable(message, hint)`` is what :meth:`hold` raises while the journal's
        database cannot be reached (the broker's retryable error); without it the
        journal's own :class:`JournalUnavailable`."""
        self.journal = journal
        self.prices = prices or PriceTable()
        self._terms = terms
        self._insufficient = insufficient_funds
        self._refused = refused
        self._unavailable = unavailable
        self.welcome_grant = welcome_grant
        self._on_activity = on_activity
        self._epoch_queries = max(1, epoch_queries)
        self._unverified_limit = unverified_limit
        self._verified: dict[str, int] = {}  # payer -> highest total whose signature was checked
        self._best: dict[str, tuple[int, str]] = {}  # payer -> its highest verified authorisation
        self._presented: dict[str, tuple[int, str]] = {}  # payer -> its highest accepted one, maybe unverified
        self._loaded: set[str] = set()  # payers whose holds' authorisations were read back from the journal
        self._reserved: Callable[[str], int] = _nothing_reserved
        self._peers: dict[str, int] = {}  # peer realm -> its credit limit (set by the federation)
        self._since_poke = 0
        self._process_status = process_status
        self.failures = 0  # captures and releases that could not be written (logged)

    def set_reserved(self, reserved: Callable[[str], int]) -> None:
        """``reserved(payer)``: base units the payer's API keys may still spend, which its
        authorisations must cover beyond what it committed (the broker's key store)."""
        self._reserved = reserved

    def quote(self, user: str, intent: str, model: str | None, params: dict[str, Any]) -> int:
        return self.prices.quote(intent, params)

    def commit(self) -> None:
        """The broker's end of a pass (never raises into it; see Journal.commit_pass)."""
        self.journal.commit_pass()

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
            "committed": self.journal.committed(user) + self._reserved(user),
            "quotes": {intent: self.prices.quote(intent, {}) for intent in self.prices.rules},
        }

    # --- peer realms ----------------------------------------------------------------------

    def credit(self, peer: str, limit: int) -> None:
        """``peer`` is a pinned peer realm that may owe this realm up to ``limit`` unpaid."""
        self._peers[peer] = max(0, limit)

    def _credit_line(self, peer: str, limit: int) -> None:
        """Book the peer's credit line as ``limit`` (a lower limit takes back only unused credit)."""
        with self.journal.atomic():
            line = -self.journal.balance(A.realm(peer))
            change = limit - line if limit >= line else -min(line - limit, self.journal.balance(A.user(peer)))
            if change == 0:
                return
            self.journal.post(
                "credit_line",
                f"{peer}:{self.journal.last_txn_id()}",
                ((A.realm(peer), -change), (A.user(peer), change)),
                payer=peer,
                amount=line + change,
                memo=f"peer realm credit line {line} -> {line + change}",
            )

    def _hold_on_credit(self, peer: str, guid: str, amount: int) -> None:
        self._credit_line(peer, self._peers[peer])
        try:
            self.journal.post_hold(guid, peer, amount)
        except Overdraft as exc:
            raise self._refused(
                "peer_credit_exceeded",
                f"your realm has {exc.balance} of its credit here left, less than the price {amount}",
                "settle with this realm (`mtor federation settle`), then retry",
                limit=self._peers[peer],
                price=amount,
            ) from None

    # --- hold ---------------------------------------------------------------------------

    def hold(self, user: str, guid: str, amount: int, authorisation: Any = None) -> None:
        """Hold ``amount`` for ``guid``; ``authorisation`` has ``total`` and ``signature``."""
        try:
            self._hold(user, guid, amount, authorisation)
        except JournalUnavailable as exc:
            if self._unavailable is None:
                raise
            raise self._unavailable(exc.message, exc.hint) from None

    def _hold(self, user: str, guid: str, amount: int, authorisation: Any) -> None:
        if amount < 0:
            raise ValueError(f"negative hold {amount}")
        if amount == 0:
            return
        held, exiting, committed = self.journal.before_hold(guid, user)
        if held:
            return  # the same intent resubmitted or requeued: already held
        if user in self._peers:
            self._hold_on_credit(user, guid, amount)
            return
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
        needed = committed + self._reserved(user) + amount
        total = getattr(authorisation, "total", None)
        signature = getattr(authorisation, "signature", None)
        if not isinstance(total, int) or isinstance(total, bool) or total < needed:
            what = "no spending authorisation" if authorisation is None else f"an authorisation of {total}"
            raise self._refused(
                "bad_authorisation",
                f"this paid realm needs your signed authorisation of at least {format_amount(needed)} $9000"
                f" in all; the request carried {what}",
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
            self._remember(self._best, user, total, signature)
        self._remember(self._presented, user, total, signature)
        return total, signature

    # --- standing authorisations (API keys) --------------------------------------------------

    def authorise(self, user: str, authorisation: Any, extra: int) -> None:
        """Accept ``authorisation`` (``total``, ``signature``) as ``user``'s standing one if it covers
        what the user committed, what its keys may still spend, and ``extra`` more (a new key's
        limit); verified now. Raises PaymentRefused ``bad_authorisation`` with what it must cover."""
        committed = self.journal.committed(user)
        total, signature = self._authorised(user, extra, committed, authorisation)
        terms = self._terms()
        if terms is not None and self._best.get(user, (0, ""))[0] < total:
            if not auth.verify(terms, user, total, signature):  # within the lazy bound: check it anyway
                raise self._bad_signature(user, terms, committed + self._reserved(user) + extra)
            self._remember(self._best, user, total, signature)

    def standing(self, user: str) -> tuple[int, str] | None:
        """``user``'s highest authorisation whose signature is valid: the one its API keys'
        requests are held under. From this process's memory, else from the journal's holds."""
        terms = self._terms()
        if terms is None:
            return None
        if user not in self._loaded:
            self._loaded.add(user)
            self._load(terms, user)
        best, latest = self._best.get(user), self._presented.get(user)
        if latest is not None and (best is None or latest[0] > best[0]):
            if auth.verify(terms, user, *latest):
                self._remember(self._best, user, *latest)
                self._verified[user] = max(self._verified.get(user, 0), latest[0])
            elif best is not None:
                self._presented[user] = best
            else:
                del self._presented[user]
        return self._best.get(user)

    def _load(self, terms: auth.Terms, user: str) -> None:
        """The highest valid authorisation ``user``'s holds carried (after a restart): a scan of the
        journal's holds, once per payer per process (the journal keeps no index by payer)."""
        texts = {text for _, _, text in self.journal.hold_authorisations(payer=user)}
        for total, signature in sorted((auth.decode(text) for text in texts), reverse=True):
            if auth.verify(terms, user, total, signature):
                self._remember(self._best, user, total, signature)
                return

    @staticmethod
    def _remember(where: dict[str, tuple[int, str]], user: str, total: int, signature: str) -> None:
        if where.get(user, (-1, ""))[0] < total:
            where[user] = (total, signature)

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
        last = self.journal.last_epoch_row("settled")
        settled = 0 if last is None else int(last[2])
        waiting = self.journal.count("capture", settled)
        oldest = self.journal.first_time("capture", settled)
        out: dict[str, Any] = {
            "state": upkeep.get("state", "starting"),
            "failures": int(upkeep.get("failures", 0)),
            "consecutive_failures": int(upkeep.get("consecutive_failures", 0)),
            "last_error": upkeep.get("last_error"),
            "settled_epochs": self.journal.epoch_count("settled"),
            "unsettled_receipts": waiting,
            "oldest_unsettled_s": 0.0 if oldest is None else max(0.0, time.time() - oldest),
            "capture_failures": self.failures + self.journal.commit_failures,
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


def _nothing_reserved(user: str) -> int:
    return 0

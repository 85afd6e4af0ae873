"""Pay per query: the broker's ``Billing`` protocol on top of the journal.

- ``quote`` prices the most an intent can cost (the hold);
- ``hold`` moves that much from ``user:A`` to ``hold:A`` when the intent is
  accepted, or refuses with InsufficientFunds: nothing is dispatched unpaid;
- ``capture`` turns the hold into the worker's earning plus the realm fee;
  usage may cost less than the hold (never more), the rest goes back;
- ``release`` gives the whole hold back (failure, cancel, timeout).

Time in the queue is never priced: the cost depends on usage only.
The ledger does not import the broker; the broker's exception class is passed
in (``insufficient_funds=broker.billing.InsufficientFunds``) by whoever wires
them together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger import accounts as A
from ledger.errors import InsufficientFunds
from ledger.journal import Journal, Overdraft
from ledger.pricing import PriceTable


class RealmBilling:
    def __init__(
        self,
        journal: Journal,
        prices: PriceTable | None = None,
        *,
        insufficient_funds: Callable[[int, int], Exception] = InsufficientFunds,
        on_new_user: Callable[[str], None] | None = None,
    ) -> None:
        """``on_new_user(address)`` runs once when a user who never had a balance
        is refused (a dev realm's welcome grant); the hold is then tried again."""
        self.journal = journal
        self.prices = prices or PriceTable()
        self._insufficient = insufficient_funds
        self._on_new_user = on_new_user

    def quote(self, user: str, intent: str, model: str | None, params: dict[str, Any]) -> int:
        return self.prices.quote(intent, params)

    def commit(self) -> None:
        self.journal.commit()

    def hold(self, user: str, guid: str, amount: int) -> None:
        if amount < 0:
            raise ValueError(f"negative hold {amount}")
        if amount == 0:
            return
        if self.journal.open_hold(guid) is not None:
            return  # the same intent resubmitted or requeued: already held
        try:
            self._post_hold(user, guid, amount)
        except Overdraft as exc:
            if self._on_new_user is None or not self._never_seen(user):
                raise self._insufficient(exc.balance, amount) from None
            self._on_new_user(user)
            try:
                self._post_hold(user, guid, amount)
            except Overdraft as again:
                raise self._insufficient(again.balance, amount) from None

    def _post_hold(self, user: str, guid: str, amount: int) -> None:
        self.journal.post(
            "hold", guid, ((A.user(user), -amount), (A.hold(user), amount)), payer=user, amount=amount
        )

    def _never_seen(self, user: str) -> bool:
        return not self.journal.touched(A.user(user)) and self.journal.get("welcome", user) is None

    def capture(self, guid: str, worker: str, intent: str, usage: dict[str, int]) -> int:
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
        return cost

    def release(self, guid: str) -> None:
        held = self.journal.open_hold(guid)
        if held is None:
            return
        user, amount = held
        self.journal.post(
            "release", guid, ((A.hold(user), -amount), (A.user(user), amount)), payer=user, amount=amount
        )

    def balance(self, user: str) -> int:
        """What the user can spend now (deposits credited, minus holds and spending)."""
        return self.journal.balance(A.user(user))

    def earnings(self, workers: list[str]) -> dict[str, int]:
        """Each worker's earnings not yet withdrawn, settled or not, by address."""
        found = self.journal.balances_of(A.worker(w) for w in workers)
        return {w: found[A.worker(w)] for w in workers}

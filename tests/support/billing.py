"""A Billing kept in a dict, every call recorded: the broker's side of money without a ledger."""

from __future__ import annotations

from typing import Any

from broker import InsufficientFunds
from broker.billing import PaymentRefused
from broker.protocol import Authorisation

PRICE = 100
COST = 60


class DictBilling:
    """Balances in a dict; every call recorded."""

    def __init__(self, balances: dict[str, int]) -> None:
        self.balances = balances
        self.holds: dict[str, tuple[str, int]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.durable: list[tuple[Any, ...]] = []  # the calls as of the last commit
        self.usages: list[dict[str, int]] = []  # what each capture was told
        self.authorised: dict[str, Any] | None = None  # terms: authorisations are required
        self.credits: dict[str, int] = {}  # peer realms paying on credit, and their limits

    def quote(self, user: str, intent: str, model: str | None, params: dict[str, Any]) -> int:
        self.calls.append(("quote", user, intent))
        return PRICE

    def credit(self, payer: str, limit: int) -> None:
        self.credits[payer] = limit

    def hold(self, user: str, guid: str, amount: int, authorisation: Authorisation | None) -> None:
        if self.authorised is not None and user not in self.credits and (authorisation is None or authorisation.total < amount):
            raise PaymentRefused("bad_authorisation", "sign it", "the SDK signs", needed=amount)
        balance = self.balances.get(user, 0)
        if balance < amount:
            raise InsufficientFunds(balance, amount)
        self.balances[user] = balance - amount
        self.holds[guid] = (user, amount)
        self.calls.append(("hold", user, guid, amount))

    def capture(self, guid: str, worker: str, intent: str, usage: dict[str, int]) -> int:
        user, amount = self.holds.pop(guid)
        self.balances[user] += amount - COST
        self.balances[worker] = self.balances.get(worker, 0) + COST
        self.calls.append(("capture", guid, worker, intent))
        self.usages.append(usage)
        return COST

    def release(self, guid: str) -> None:
        user, amount = self.holds.pop(guid)
        self.balances[user] += amount
        self.calls.append(("release", guid))

    def balance(self, user: str) -> int:
        return self.balances.get(user, 0)

    def earnings(self, workers: list[str]) -> dict[str, int]:
        return {w: self.balances.get(w, 0) for w in workers}

    def commit(self) -> None:
        self.durable = list(self.calls)

    def terms(self, user: str) -> dict[str, Any] | None:
        return None if self.authorised is None else {**self.authorised, "committed": 0}

    def set_reserved(self, reserved: Any) -> None:
        self.reserved = reserved

    def authorise(self, user: str, authorisation: Authorisation | None, extra: int) -> None:
        if self.authorised is not None and (authorisation is None or authorisation.total < extra):
            raise PaymentRefused("bad_authorisation", "sign it", "the SDK signs", needed=extra)

    def standing(self, user: str) -> tuple[int, str] | None:
        return None

    def status(self) -> dict[str, Any]:
        return {
            "state": "failing",
            "failures": 7,
            "last_error": "ChainError: cannot reach the chain",
            "settled_epochs": 2,
            "unsettled_receipts": 3,
            "oldest_unsettled_s": 12.5,
            "capture_failures": 0,
            "process": "running",
            "restarts": 1,
        }

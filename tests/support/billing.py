"""A Billing kept in a dict, every call recorded: the broker's side of money without a ledger."""

from __future__ import annotations

from typing import Any

from broker import InsufficientFunds

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

    def quote(self, user: str, intent: str, model: str | None, params: dict[str, Any]) -> int:
        self.calls.append(("quote", user, intent))
        return PRICE

    def hold(self, user: str, guid: str, amount: int) -> None:
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

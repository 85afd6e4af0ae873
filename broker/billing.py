"""How the broker charges for intents, without knowing how the ledger works.

``ledger.RealmBilling`` implements :class:`Billing`; a realm started with
``billing=None`` is free (every cost is 0). Calls are synchronous and run on
the broker's event loop, so implementations must be quick (local SQLite).
What a realm's users ask of its ledger over HTTP (wallets, proofs, the chain)
is the money desk's, on a thread of its own (broker/money_rest.py). Amounts are integers in base units of $9000 (18 decimals).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from broker.protocol import Authorisation, MtorError


class InsufficientFunds(Exception):
    def __init__(self, balance: int, price: int) -> None:
        super().__init__(f"balance {balance} does not cover price {price}")
        self.balance = balance
        self.price = price


@runtime_checkable
class Billing(Protocol):
    def quote(self, user: str, intent: str, model: str | None, params: dict[str, Any]) -> int:
        """The amount to hold for this intent (the most it can cost)."""
        ...

    def hold(self, user: str, guid: str, amount: int, authorisation: Authorisation | None) -> None:
        """Reserve ``amount`` of the user's balance, covered by the user's signed
        ``authorisation``; raises InsufficientFunds or PaymentRefused."""
        ...

    def capture(self, guid: str, worker: str, intent: str, usage: dict[str, int]) -> int:
        """Charge for the finished intent (<= the hold) and pay the worker; returns the cost."""
        ...

    def release(self, guid: str) -> None:
        """Give the hold back: the intent failed or was cancelled."""
        ...

    def balance(self, user: str) -> int:
        """What ``user`` can spend now (shown to that user's subscriptions)."""
        ...

    def earnings(self, workers: list[str]) -> dict[str, int]:
        """What each worker (by address) has earned and not claimed; one call
        for a whole `workers` push, which may list a thousand workers."""
        ...

    def commit(self) -> None:
        """Make everything posted so far durable. The broker calls it once per
        event-loop pass, before any frame of that pass goes out, so a client
        never sees `accepted` or `result` for money the ledger could forget."""
        ...

    def terms(self, user: str) -> dict[str, Any] | None:
        """What ``user`` signs authorisations for (``chain_id``, ``contract``,
        ``committed``): sent in its Welcome. None while the ledger has no contract."""
        ...

    def status(self) -> dict[str, Any]:
        """The ledger's background upkeep: state, failures, what waits for settlement
        (``/v1/stats``, ``/metrics``, `mtor broker status`)."""
        ...


class PaymentRefused(MtorError):
    """The ledger will not charge for this query: no spending authorisation that covers it
    (``bad_authorisation``), or the payer is leaving (``exit_pending``). ``detail`` says what
    would be accepted."""

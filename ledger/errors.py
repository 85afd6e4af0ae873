"""The ledger's errors: each has a stable code, a message and a hint for people."""

from __future__ import annotations


class LedgerError(Exception):
    """Something a person can fix: a bad amount, an unreachable chain, a missing deployment."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


class InsufficientFunds(LedgerError):
    """The available balance does not cover the price (same shape as broker.billing's)."""

    def __init__(self, balance: int, price: int) -> None:
        super().__init__(
            "insufficient_funds",
            f"balance {balance} does not cover price {price}",
            "deposit $9000 with `mtor wallet deposit AMOUNT`",
        )
        self.balance = balance
        self.price = price


class ChainError(LedgerError):
    """The chain could not be reached, is the wrong one, or refused a transaction."""


class PaymentRefused(LedgerError):
    """A query the realm will not charge for: no valid spending authorisation, an exit pending.

    ``detail`` tells a client what would be accepted (``needed``, the realm's
    ``chain_id`` and ``contract`` to sign for), so the SDK can sign and retry.
    """

    def __init__(self, code: str, message: str, hint: str = "", **detail: object) -> None:
        super().__init__(code, message, hint)
        self.detail = detail

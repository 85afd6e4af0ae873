"""Journal account names. Every balance the realm keeps is one of these.

``escrow`` is the contra account of the tokens the RealmLedger contract holds:
a deposit moves value from ``escrow`` to ``user:A``, a claim, a refund or an
exit moves it back, so ``-balance(escrow)`` is what the contract should hold. It is the
only account allowed below zero, with ``grants``: a welcome grant is credited
to the user at once from ``grants``, and the realm's deposit on chain moves
it back from ``escrow`` when it lands, so ``-balance(grants)`` is what the
realm has promised and not yet escrowed.
"""

from __future__ import annotations

ESCROW = "escrow"
FEE = "fee"
GRANTS = "grants"


def user(address: str) -> str:
    """Spendable deposit of a payer."""
    return f"user:{address}"


def hold(address: str) -> str:
    """Deposit reserved for a payer's queries that have not finished yet."""
    return f"hold:{address}"


def worker(address: str) -> str:
    """A worker's earnings, settled or not, that it has not claimed."""
    return f"worker:{address}"


def refund(address: str) -> str:
    """Deposit reserved by an outstanding refund voucher."""
    return f"refund:{address}"


def owner(account: str) -> str | None:
    """The address an account belongs to (None for escrow and fee)."""
    _, _, address = account.partition(":")
    return address or None


def may_go_negative(account: str) -> bool:
    return account == ESCROW or account == GRANTS

"""$9000 token accounting for an MTOR realm.

A double-entry journal in SQLite (:class:`Journal`), a price table
(:class:`PriceTable`), pay per query for the broker (:class:`RealmBilling`,
the broker's ``Billing`` protocol), and the chain side — contracts, deposits,
epoch settlement, audit — behind :class:`Ledger`. Nothing of the rest of
MTOR is imported here; web3 is imported only where the chain is used.
"""

from __future__ import annotations

from ledger.billing import RealmBilling
from ledger.errors import ChainError, InsufficientFunds, LedgerError
from ledger.journal import Journal
from ledger.pricing import PriceTable
from ledger.service import Ledger, LedgerConfig
from ledger.units import format_amount, parse_amount

__all__ = [
    "ChainError",
    "InsufficientFunds",
    "Journal",
    "Ledger",
    "LedgerConfig",
    "LedgerError",
    "PriceTable",
    "RealmBilling",
    "format_amount",
    "parse_amount",
]

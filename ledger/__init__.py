"""$9000 token accounting for an MTOR realm.

A hash-chained double-entry journal in SQLite or PostgreSQL (:class:`Journal`,
opened by :func:`open_journal`), a price
table (:class:`PriceTable`), pay per query for the broker (:class:`RealmBilling`,
the broker's ``Billing`` protocol) against the payers' signed spending
authorisations (:class:`Terms` says what to sign), and the chain side —
contracts, deposits, settlement, claims, exits, audit — behind
:class:`Ledger`, with its upkeep in a process of its own
(``ledger.upkeep``) and its money desk answering the realm's users over the
broker's HTTP (``ledger.desk``). Nothing of the rest of MTOR is imported here; web3 is
imported only where the chain is used.
"""

from __future__ import annotations

from ledger.authorisation import Terms
from ledger.billing import RealmBilling
from ledger.errors import ChainError, InsufficientFunds, LedgerError, PaymentRefused
from ledger.journal import Journal, JournalUnavailable, open_journal
from ledger.pricing import PriceTable
from ledger.service import Ledger, LedgerConfig
from ledger.units import format_amount, parse_amount

__all__ = [
    "ChainError",
    "InsufficientFunds",
    "Journal",
    "JournalUnavailable",
    "Ledger",
    "LedgerConfig",
    "LedgerError",
    "PaymentRefused",
    "PriceTable",
    "RealmBilling",
    "Terms",
    "format_amount",
    "open_journal",
    "parse_amount",
]

"""Who holds the sysop role: the realm's operator by right, and the addresses it granted.

A part of its own because several parts ask it (subscriptions, to show a sysop
every user's intents; the REST profile; the sysop actions) and none of them
needs the rest of :class:`broker.sysop.Sysop` to ask.
"""

from __future__ import annotations

from broker.accounts import AccountStore, norm


class Roles:
    def __init__(self, operator: str | None, store: AccountStore) -> None:
        self._operator = None if operator is None else norm(operator)
        self._store = store

    def is_operator(self, address: str) -> bool:
        return self._operator is not None and self._operator == norm(address)

    def is_sysop(self, address: str) -> bool:
        return self.is_operator(address) or norm(address) in self._store.sysops

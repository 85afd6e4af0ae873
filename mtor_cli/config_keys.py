"""Every setting mtor reads from config.toml: its dotted key, what it does, an example.

``mtor config list`` and ``mtor config --help`` show this table, and
``mtor config set`` checks a known key's value before writing it. A module
that reads a new key adds one :class:`Key` here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Key(NamedTuple):  # not a dataclass: this module is imported for `mtor --help`
    name: str
    help: str
    example: str
    check: Callable[[str], str | None] | None = None  # the problem with a value, or None


def _broker(value: str) -> str | None:
    from mtor_cli.client import RealmError, check_urls

    try:
        check_urls(value)
    except RealmError as exc:
        return exc.message
    return None


def _http(value: str) -> str | None:
    return None if value.startswith(("http://", "https://")) and _broker(value) is None else "not an http(s) URL"


def _count(value: str) -> str | None:
    return None if value.isdigit() else "not a whole number"


def _seconds(value: str) -> str | None:
    try:
        return None if float(value) > 0 else "not more than 0"
    except ValueError:
        return "not a number"


# Each help fits the 52 columns `mtor config --help` has for it in an 80-column terminal.
KEYS: tuple[Key, ...] = (
    Key("broker", "the realm to use (--broker, $MTOR_BROKER win)", "ws://realm.example:8765", _broker),
    Key("ledger.pricing", "a paid realm's prices (see `mtor pricing -h`)", "/etc/mtor/pricing.toml"),
    Key("ledger.chain_rpc", "its chain's JSON-RPC (default: embedded chain)", "http://127.0.0.1:8545", _http),
    Key("ledger.public_rpc", "that chain's JSON-RPC for users (default: relay)", "https://rpc.example.org", _http),
    Key("ledger.confirmations", "blocks a deposit waits before it is credited", "2", _count),
    Key("ledger.epoch_seconds", "seconds before a settlement epoch closes", "60", _seconds),
    Key("ledger.epoch_queries", "paid queries before a settlement epoch closes", "1000", _count),
)

BY_NAME = {key.name: key for key in KEYS}


def problem(name: str, value: str) -> str | None:
    """What is wrong with ``value`` for a known key (None: fine, or a key mtor does not check)."""
    key = BY_NAME.get(name)
    return None if key is None or key.check is None else key.check(value)


def help_text() -> str:
    """The keys for `mtor config --help` (rich markup: brackets escaped)."""
    return "\n".join(f"  {k.name:<22} {k.help}" for k in KEYS).replace("[", "\\[")

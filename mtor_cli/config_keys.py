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


def _address(value: str) -> str | None:
    ok = len(value) == 42 and value.startswith("0x") and all(c in "0123456789abcdefABCDEF" for c in value[2:])
    return None if ok else "not a 0x address of 40 hex digits"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else "not " + " or ".join(choices)

    return check


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
    Key("ledger.epoch_queries", "paid queries before an epoch closes (10000)", "1000", _count),
    Key("ledger.gas_cap", "most gas a realm transaction may use (15M)", "12000000", _count),
    Key("ledger.exit_window_s", "a new deployment's exit window (1 day; dev 10 s)", "3600", _count),
    Key("ledger.hold_ttl_s", "seconds before an unfinished hold returns (3600)", "600", _seconds),
    Key("ledger.stale_epochs", "epochs unsettled before the audit objects (3)", "5", _count),
    Key("ledger.token", "the $9000 token a new deployment uses (shared)", "0x" + "5f" * 20, _address),
    Key("location", "your place, for weather requests naming none", '"Oslo, Norway"'),
    Key("units", "weather answers in metric or imperial units", "imperial", _one_of("metric", "imperial")),
    Key("weather.geocoding_url", "the weather worker's geocoding API", "https://geocoding-api.open-meteo.com/v1/search",
        _http),
    Key("weather.forecast_url", "the weather worker's forecast API", "https://api.open-meteo.com/v1/forecast", _http),
    Key("weather.timeout_s", "seconds each weather API call may take", "10", _seconds),
    Key("email.address", "your mailbox (`mtor email login` sets email.*)", "you@gmail.com"),
    Key("email.summaries", "mail summarised by local chat only, or always", "always", _one_of("local", "always")),
    Key("realm.models.imagine", "the embedded realm's imagine model", "/models/sd-turbo"),
    Key("realm.models.vision", "the embedded realm's vision model", "/models/vit-gpt2"),
    Key("realm.models.speech", "its speech model (default: Whisper tiny.en)", "/models/whisper-small"),
    Key("realm.models.embed", "its embed model (default: all-MiniLM-L6-v2)", "/models/bge-small"),
    Key("realm.models.chat", "its chat model (default: SmolLM2-135M)", "/models/qwen2.5-0.5b"),
)

BY_NAME = {key.name: key for key in KEYS}


def problem(name: str, value: str) -> str | None:
    """What is wrong with ``value`` for a known key (None: fine, or a key mtor does not check)."""
    key = BY_NAME.get(name)
    return None if key is None or key.check is None else key.check(value)


def help_text() -> str:
    """The keys for `mtor config --help` (rich markup: brackets escaped)."""
    return "\n".join(f"  {k.name:<22} {k.help}" for k in KEYS).replace("[", "\\[")

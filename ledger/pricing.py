"""What an intent costs: a price table per intent, with defaults and a file override.

Each rule prices one unit of usage:

| unit           | counted from the worker's ``usage``                       | the hold assumes            |
| -------------- | --------------------------------------------------------- | --------------------------- |
| ``1k_tokens``  | ``prompt_tokens + completion_tokens`` (or ``tokens``)     | ``max_tokens`` + prompt allowance |
| ``image``      | ``images`` (default 1)                                    | ``n`` (default 1)           |
| ``audio_second``| ``audio_seconds`` (or ``audio_ms`` / 1000)               | ``max_seconds`` (default)   |
| ``query``      | 1                                                         | 1                           |

Prices are $9000 decimals in the file and integers in base units here.
An intent without a rule uses the ``default`` rule. The override file is
TOML or JSON (by extension)::

    fee_bps = 1000            # the realm's share of every payment: 10 %
    [chat]
    unit = "1k_tokens"
    price = "0.01"
    [imagine]
    price = "0.5"             # unit defaults to the default table's
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError
from ledger.units import parse_amount

UNITS = ("1k_tokens", "image", "audio_second", "query")


@dataclass(frozen=True)
class PriceRule:
    intent: str
    unit: str
    price: int  # base units per unit
    # What a hold assumes when the request does not say:
    default_units: int = 1  # tokens for 1k_tokens, seconds for audio_second
    prompt_allowance: int = 0  # tokens held for the prompt (chat)

    def quote_units(self, params: dict[str, Any]) -> int:
        if self.unit == "1k_tokens":
            return _positive_int(params.get("max_tokens"), self.default_units) + self.prompt_allowance
        if self.unit == "image":
            return _positive_int(params.get("n"), 1)
        if self.unit == "audio_second":
            return _positive_int(params.get("max_seconds"), self.default_units)
        return 1

    def used_units(self, usage: Mapping[str, Any]) -> int | None:
        """Units actually used, or None when the usage does not say (charge the hold).

        The worker reports usage; nothing it reports can make a cost negative:
        counts below zero are zero, anything that is not a number says nothing.
        """
        if self.unit == "1k_tokens":
            prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
            if prompt is not None or completion is not None:
                return (prompt or 0) + (completion or 0)
            return _count(usage.get("tokens"))
        if self.unit == "image":
            images = _count(usage.get("images"))
            return 1 if images is None else images
        if self.unit == "audio_second":
            seconds = _count(usage.get("audio_seconds"))
            if seconds is not None:
                return seconds
            ms = _count(usage.get("audio_ms"))
            return None if ms is None else math.ceil(ms / 1000)
        return 1

    def cost(self, units: int) -> int:
        if self.unit == "1k_tokens":
            return -(-self.price * units // 1000)  # ceil: a partial 1k is still paid
        return self.price * units


DEFAULT_RULES: tuple[PriceRule, ...] = (
    PriceRule("chat", "1k_tokens", parse_amount("0.01"), default_units=512, prompt_allowance=1024),
    PriceRule("vision", "image", parse_amount("0.05")),
    PriceRule("imagine", "image", parse_amount("0.5")),
    PriceRule("speech", "audio_second", parse_amount("0.001"), default_units=120),
    PriceRule("default", "query", parse_amount("0.01")),
)
DEFAULT_FEE_BPS = 1000  # 10 %


@dataclass(frozen=True)
class PriceTable:
    rules: dict[str, PriceRule] = field(
        default_factory=lambda: {r.intent: r for r in DEFAULT_RULES}
    )
    fee_bps: int = DEFAULT_FEE_BPS

    def rule(self, intent: str) -> PriceRule:
        return self.rules.get(intent) or self.rules["default"]

    def quote(self, intent: str, params: dict[str, Any] | None = None) -> int:
        rule = self.rule(intent)
        return rule.cost(rule.quote_units(params or {}))

    def cost(self, intent: str, usage: Mapping[str, Any], held: int) -> int:
        """What a finished intent costs: its usage priced, 0 <= cost <= the hold."""
        rule = self.rule(intent)
        units = rule.used_units(usage)
        if units is None:
            return max(0, held)
        return max(0, min(held, rule.cost(units)))

    def fee(self, cost: int) -> int:
        """The realm's part of ``cost``: 0 <= fee <= cost."""
        return max(0, min(cost, cost * self.fee_bps // 10_000))

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        """Defaults, overridden by ``path`` (TOML or JSON) when it exists."""
        table = cls()
        if path is None or not Path(path).exists():
            return table
        return table.merged(_read(Path(path)), str(path))

    def merged(self, data: dict[str, Any], source: str = "price table") -> PriceTable:
        rules = dict(self.rules)
        fee_bps = self.fee_bps
        for key, value in data.items():
            if key == "fee_bps":
                if not isinstance(value, int) or not 0 <= value <= 10_000:
                    raise _bad(source, "fee_bps must be an integer from 0 to 10000")
                fee_bps = value
                continue
            if not isinstance(value, dict):
                raise _bad(source, f"[{key}] must be a table")
            base = rules.get(key) or replace(rules["default"], intent=key)
            unit = value.get("unit", base.unit)
            if unit not in UNITS:
                raise _bad(source, f"[{key}] unit must be one of {', '.join(UNITS)}")
            try:
                price = parse_amount(str(value["price"]), allow_zero=True) if "price" in value else base.price
            except LedgerError as exc:
                raise _bad(source, f"[{key}] price: {exc.message}") from None
            rules[key] = PriceRule(
                key,
                unit,
                price,
                default_units=int(value.get("default_units", base.default_units)),
                prompt_allowance=int(value.get("prompt_allowance", base.prompt_allowance)),
            )
        return PriceTable(rules, fee_bps)


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise _bad(str(path), str(exc)) from None
    if not isinstance(data, dict):
        raise _bad(str(path), "expected a table of intents")
    return data


def _count(value: Any) -> int | None:
    """A usage count as a non-negative integer; None if it is not a number at all."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return 0 if value < 0 else None
    return max(0, int(value))


def _positive_int(value: Any, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return default


def _bad(source: str, why: str) -> LedgerError:
    return LedgerError("bad_pricing", f"{source}: {why}", "see `mtor pricing --help` for the format")

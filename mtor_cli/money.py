"""$9000 for people and for scripts: one rule in every command.

A person reads and types decimal $9000 (``--max-price 0.02``, "cost 0.01029").
``--json`` carries the exact integer in base units (10^18 per $9000) as a
string, since JSON readers lose precision past 2^53, beside the same amount
as a decimal string in ``<name>_9000``::

    {"cost": "10290000000000000", "cost_9000": "0.01029"}
"""

from __future__ import annotations

from typing import Any

from mtor_cli import output


def fmt(units: int | None) -> str:
    """Base units as a decimal without trailing zeros ("-" for None)."""
    if units is None:
        return "-"
    from ledger.units import format_amount

    return format_amount(int(units))


def parse(text: str, option: str, *, allow_zero: bool = True) -> int:
    """A decimal amount a person typed, in base units; a usage error (exit 2) if it is not one."""
    from ledger.errors import LedgerError
    from ledger.units import parse_amount

    try:
        return parse_amount(text, allow_zero=allow_zero)
    except LedgerError as exc:
        output.fail("usage", f"{option} {exc.message}", exc.hint)


def fields(name: str, units: int | None) -> dict[str, Any]:
    """``{name: "<base units>", name_9000: "<decimal>"}`` for a JSON object."""
    if units is None:
        return {name: None, f"{name}_9000": None}
    return {name: str(int(units)), f"{name}_9000": fmt(units)}


def reword(code: str, message: str, detail: dict[str, Any], max_price: int | None = None) -> str:
    """A broker's payment refusal in decimal $9000 (its message counts base units)."""
    price = detail.get("price")
    if not isinstance(price, int):
        return message
    if code == "price_exceeded" and max_price is not None:
        return f"the price {fmt(price)} $9000 is above --max-price {fmt(max_price)}"
    balance = detail.get("balance")
    if code == "insufficient_funds" and isinstance(balance, int):
        return f"your balance {fmt(balance)} $9000 does not cover the price {fmt(price)} $9000"
    return message

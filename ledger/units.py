"""$9000 amounts: integers in base units (18 decimals); people type decimals.

Conversion goes through :class:`decimal.Decimal` with exact arithmetic, never
through float, so "1.000000000000000001" is exactly 10**18 + 1 base units.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext

from ledger.errors import LedgerError

DECIMALS = 18
ONE = 10**DECIMALS
SYMBOL = "$9000"


def parse_amount(text: str | int | Decimal, *, allow_zero: bool = False) -> int:
    """``"1.5"`` -> 1500000000000000000 base units; refuses anything inexact or not positive."""
    if isinstance(text, bool):
        raise _bad(str(text), "not a number")
    with localcontext() as ctx:
        ctx.prec = 100
        try:
            value = Decimal(str(text).strip().replace("_", ""))
        except InvalidOperation:
            raise _bad(str(text), "not a number") from None
        if not value.is_finite():
            raise _bad(str(text), "not a finite number")
        try:
            base = value * ONE
        except ArithmeticError:  # decimal.Overflow: past the context's exponent range
            raise _bad(str(text), "far too large") from None
        if base != base.to_integral_value():
            raise _bad(str(text), f"more than {DECIMALS} decimal places")
    units = int(base)
    if units < 0 or (units == 0 and not allow_zero):
        raise _bad(str(text), "must be more than 0")
    return units


def format_amount(units: int, *, symbol: bool = False) -> str:
    """Base units as a plain decimal with no trailing zeros: 1500000000000000000 -> "1.5"."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), ONE)
    text = f"{sign}{whole}"
    if frac:
        text += "." + f"{frac:0{DECIMALS}d}".rstrip("0")
    return f"{text} {SYMBOL}" if symbol else text


def _bad(text: str, why: str) -> LedgerError:
    return LedgerError(
        "bad_amount",
        f"invalid amount {text!r}: {why}",
        f"type a positive decimal number of {SYMBOL}, e.g. 1.5",
    )

"""Short, fixed-width renderings of realm numbers for table cells."""

from __future__ import annotations

DASH = "—"
BASE_UNITS = 10**18  # $9000 has 18 decimals


def tokens(amount: int | None) -> str:
    """Base units as a short $9000 amount: 1.5, 0.0021, 12.3k; "—" when unknown."""
    if amount is None:
        return DASH
    value = amount / BASE_UNITS
    if value == 0:
        return "0"
    if abs(value) >= 10_000:
        return f"{value / 1000:,.1f}k"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def short_address(address: str) -> str:
    if address.startswith("0x") and len(address) > 12:
        return f"{address[:6]}…{address[-4:]}"
    return address or DASH


def seconds(value: float | None) -> str:
    if value is None:
        return DASH
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 100:
        return f"{value:.1f}s"
    return f"{value / 60:.0f}m"


def millis(value: float | None) -> str:
    return DASH if value is None else seconds(value / 1000)


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.0f}%"


def rate(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}/s"

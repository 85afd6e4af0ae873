from __future__ import annotations

import pytest

from ledger import LedgerError, format_amount, parse_amount
from ledger.units import ONE


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1", ONE),
        ("1.5", 3 * ONE // 2),
        ("0.000000000000000001", 1),
        ("1_000", 1000 * ONE),
        ("123456789.123456789123456789", 123456789123456789123456789),
        (" 2 ", 2 * ONE),
    ],
)
def test_decimals_convert_exactly_to_base_units(text: str, units: int) -> None:
    assert parse_amount(text) == units
    assert parse_amount(format_amount(units)) == units


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0", "more than 0"),
        ("-1", "more than 0"),
        ("abc", "not a number"),
        ("", "not a number"),
        ("1e-19", "decimal places"),
        ("0.0000000000000000001", "decimal places"),
        ("nan", "not a finite number"),
        ("inf", "not a finite number"),
    ],
)
def test_bad_amounts_are_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(LedgerError) as info:
        parse_amount(text)
    assert info.value.code == "bad_amount"
    assert why in info.value.message
    assert "e.g. 1.5" in info.value.hint


def test_a_float_never_sneaks_in() -> None:
    # 0.1 as a float is 0.1000000000000000055...; the text "0.1" is exact.
    assert parse_amount("0.1") == ONE // 10
    assert format_amount(ONE // 10) == "0.1"
    assert format_amount(-ONE - 1) == "-1.000000000000000001"
    assert format_amount(0) == "0"

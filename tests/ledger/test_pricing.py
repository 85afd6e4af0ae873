from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger import LedgerError, PriceTable
from ledger.units import ONE


def test_defaults_price_every_intent() -> None:
    t = PriceTable()
    # chat: 0.01 per 1k tokens; the hold covers max_tokens + a prompt allowance
    assert t.quote("chat", {"max_tokens": 1000}) == (1000 + 1024) * ONE // 100_000
    assert t.cost("chat", {"prompt_tokens": 500, "completion_tokens": 500}, held=10 * ONE) == ONE // 100
    assert t.quote("imagine", {"n": 2}) == ONE
    assert t.quote("vision", {}) == ONE // 20
    assert t.cost("speech", {"audio_seconds": 30}, held=ONE) == 30 * ONE // 1000
    assert t.cost("speech", {"audio_ms": 1500}, held=ONE) == 2 * ONE // 1000
    assert t.quote("echo", {}) == ONE // 100  # no rule: the default per query


def test_cost_is_never_above_the_hold_and_unknown_usage_charges_the_hold() -> None:
    t = PriceTable()
    assert t.cost("chat", {"tokens": 10**9}, held=123) == 123
    assert t.cost("chat", {}, held=77) == 77
    # partial thousands are rounded up, never down to free
    assert t.cost("chat", {"tokens": 1}, held=ONE) == ONE // 100_000


def test_fee_is_the_realm_share() -> None:
    assert PriceTable().fee(1000) == 100
    assert PriceTable(fee_bps=0).fee(1000) == 0


def test_a_toml_file_overrides_prices(tmp_path: Path) -> None:
    path = tmp_path / "pricing.toml"
    path.write_text('fee_bps = 500\n[chat]\nprice = "0.5"\n[translate]\nunit = "1k_tokens"\nprice = "1"\n')
    t = PriceTable.load(path)
    assert t.fee_bps == 500
    assert t.rule("chat").price == ONE // 2 and t.rule("chat").unit == "1k_tokens"
    assert t.rule("translate").price == ONE
    assert t.rule("imagine").price == ONE // 2  # untouched default


def test_a_json_file_works_too_and_a_missing_one_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "pricing.json"
    path.write_text(json.dumps({"imagine": {"price": "2"}}))
    assert PriceTable.load(path).rule("imagine").price == 2 * ONE
    assert PriceTable.load(tmp_path / "nope.toml") == PriceTable()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('[chat]\nprice = "-1"\n', "price"),
        ('[chat]\nunit = "furlong"\n', "unit must be one of"),
        ("fee_bps = 20000\n", "fee_bps"),
        ("chat = 3\n", "must be a table"),
        ("[chat\n", "pricing.toml"),
    ],
)
def test_a_bad_file_is_a_clear_error(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "pricing.toml"
    path.write_text(text)
    with pytest.raises(LedgerError) as info:
        PriceTable.load(path)
    assert info.value.code == "bad_pricing"
    assert why in info.value.message

"""``mtor pricing``: what each intent costs in the realm you use."""

from __future__ import annotations

from typing import Any

import typer

from mtor_cli import money, options, output

UNIT_NAMES = {"1k_tokens": "1k tokens", "image": "image", "audio_second": "audio second", "query": "query"}

HELP = """What each intent costs in the realm, in $9000.

The realm's operator sets the prices with a TOML file (config/pricing.toml,
or `pricing = "PATH"` under \\[ledger] in config.toml):

  fee_bps = 1000          # the realm's share: 10 %
  \\[chat]
  unit = "1k_tokens"
  price = "0.01"
  \\[imagine]
  price = "0.5"

Units: 1k_tokens, image, audio_second, query. Queue time is never charged.

Example:

  mtor pricing --broker ws://realm.example:8765 --json
"""


def register(app: typer.Typer) -> None:
    app.command("pricing", help=HELP)(pricing)


def pricing(broker: str | None = options.broker_option(), json_out: bool = options.json_option()) -> None:
    url = options.resolve_broker(broker)
    data = prices_of(url)
    rows: list[dict[str, Any]] = [
        {"intent": r["intent"], "unit": r["unit"], **money.fields("price", int(r["price"])),
         **money.fields("typical_hold", int(r["typical_hold"]))}
        for r in data["prices"]
    ]  # fmt: skip
    if json_out:
        output.print_json({"broker": url, "realm": data["realm"], "paid": data["paid"], "fee_bps": data["fee_bps"],
                           "prices": rows})  # fmt: skip
        return
    if not data["paid"]:
        print(f"the realm at {url} is free: every intent costs 0 $9000")
        return
    from rich.table import Table

    t = Table(title=f"prices in the realm at {url}\n(realm fee {data['fee_bps'] / 100:g} %)")
    for col in ("intent", "price ($9000)", "per", "held up front"):
        t.add_column(col, justify="right" if col != "intent" else "left")
    for r in rows:
        t.add_row(r["intent"], r["price_9000"], UNIT_NAMES.get(r["unit"], r["unit"]), r["typical_hold_9000"])
    output.out_console().print(t)


def prices_of(url: str) -> dict[str, Any]:
    """The realm's price table (``GET /v1/pricing``); fails with the one error line."""
    from mtor_cli.client import RealmError
    from mtor_cli.signed import call

    try:
        return dict(call(url, "GET", "/v1/pricing", signed=False))
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)

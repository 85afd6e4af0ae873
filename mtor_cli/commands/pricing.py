"""``mtor pricing``: what each intent costs in this realm."""

from __future__ import annotations

from typing import Any

import typer

from mtor_cli import output
from mtor_cli.commands.ledger import JSON_HELP, fmt, guarded

UNIT_NAMES = {"1k_tokens": "1k tokens", "image": "image", "audio_second": "audio second", "query": "query"}

HELP = """What each intent costs, in $9000.

Override it with a TOML file
(config/pricing.toml, or `pricing = "PATH"` under \\[ledger] in config.toml):

  fee_bps = 1000          # the realm's share: 10 %
  \\[chat]
  unit = "1k_tokens"
  price = "0.01"
  \\[imagine]
  price = "0.5"

Units: 1k_tokens, image, audio_second, query. Queue time is never charged.

Example:

  mtor pricing --json
"""


def register(app: typer.Typer) -> None:
    app.command("pricing", help=HELP)(pricing)


def pricing(json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    from ledger import PriceTable
    from mtor_cli import paths
    from mtor_cli.commands.ledger import ledger_settings

    cfg = ledger_settings()
    path = cfg.get("pricing") or paths.config_dir() / "pricing.toml"
    with guarded():
        table = PriceTable.load(path)
    rows: list[dict[str, Any]] = [
        {
            "intent": r.intent,
            "unit": r.unit,
            "price": r.price,
            "price_9000": fmt(r.price),
            "typical_hold": r.cost(r.quote_units({})),
        }
        for r in table.rules.values()
    ]
    if json_out:
        output.print_json({"fee_bps": table.fee_bps, "prices": rows})
        return
    from rich.table import Table

    t = Table(title=f"pricing (realm fee {table.fee_bps / 100:g} %)")
    for col in ("intent", "price ($9000)", "per", "held up front"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["intent"], r["price_9000"], UNIT_NAMES[r["unit"]], fmt(r["typical_hold"]))
    output.out_console().print(t)

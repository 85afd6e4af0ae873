"""``mtor models``: what the realm serves right now: intents, models, workers."""

from __future__ import annotations

from typing import Any

import typer

from mtor_cli import money, options, output

HELP = """What the realm serves now: intents, models, workers, free slots.

With each, what it costs in this realm ($9000 per unit; free realms: 0).

Example:

  mtor models --broker ws://realm.example:8765 --json
"""


def register(app: typer.Typer) -> None:
    app.command("models", help=HELP)(models)


def models(
    broker: str | None = options.broker_option(),
    json_out: bool = options.json_option("Print one JSON object."),
) -> None:
    from mtor_cli.client import RealmError, http_get_json
    from mtor_cli.commands.pricing import UNIT_NAMES, prices_of

    url = options.resolve_broker(broker)
    try:
        workers = http_get_json(url, "/v1/workers").get("workers", [])
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    rules = {r["intent"]: r for r in prices_of(url)["prices"]}
    rows = served(workers)
    for row in rows:
        rule = rules.get(row["intent"]) or rules.get("default")
        row["unit"] = rule["unit"] if rule else None
        row.update(money.fields("price", int(rule["price"]) if rule else 0))
    if json_out:
        output.print_json({"broker": url, "models": rows})
        return
    from rich.table import Table

    table = Table(title=f"served by {url}")
    for column in ("intent", "model", "workers", "free slots", "$9000"):
        table.add_column(column, justify="left" if column in ("intent", "model") else "right")
    for row in rows:
        per = f" per {UNIT_NAMES.get(row['unit'], row['unit'])}" if row["unit"] else ""
        table.add_row(
            row["intent"], row["model"], str(row["workers"]), f"{row['free_slots']}/{row['slots']}",
            row["price_9000"] + per,
        )  # fmt: skip
    if not rows:
        table.add_row("nothing yet", "start a worker: mtor worker serve", "", "", "")
    output.out_console().print(table)


def served(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (intent, model) over the realm's workers, with their count and slots."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for worker in workers:
        slots = int(worker.get("slots", 0))
        free = max(0, slots - int(worker.get("running", 0)))
        for cap in worker.get("capabilities", []):
            for model in cap.get("models") or ["(default)"]:
                row = found.setdefault(
                    (cap["intent"], model),
                    {"intent": cap["intent"], "model": model, "workers": 0, "slots": 0, "free_slots": 0},
                )
                row["workers"] += 1
                row["slots"] += slots
                row["free_slots"] += free
    return [found[key] for key in sorted(found)]

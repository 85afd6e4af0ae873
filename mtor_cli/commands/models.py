"""``mtor models``: what the realm serves right now: intents, models, workers."""

from __future__ import annotations

from typing import Any

import typer

from mtor_cli import options, output

HELP = """What the realm serves now: intents, models, workers, free slots.

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

    url = options.resolve_broker(broker)
    try:
        workers = http_get_json(url, "/v1/workers").get("workers", [])
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    rows = served(workers)
    if json_out:
        output.print_json({"broker": url, "models": rows})
        return
    from rich.table import Table

    table = Table(title=f"served by {url}")
    for column in ("intent", "model", "workers", "free slots"):
        table.add_column(column, justify="right" if column in ("workers", "free slots") else "left")
    for row in rows:
        table.add_row(row["intent"], row["model"], str(row["workers"]), f"{row['free_slots']}/{row['slots']}")
    if not rows:
        table.add_row("nothing yet", "start a worker: mtor worker serve", "", "")
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

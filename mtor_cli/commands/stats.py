"""``mtor stats``: the realm's totals from its journal."""

from __future__ import annotations

from typing import Any

import typer

from mtor_cli import money, options, output


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)


def stats(
    broker: str | None = options.broker_option(),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Realm totals: intents, success rate, latency, users, $9000.

    Intents by type, success rate, median and p95 latency by intent, active
    users and workers, $9000 spent and earned (decimal; base units in --json).

    Example:

      mtor stats --broker ws://realm.example:8765
    """
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "GET", "/v1/totals", signed=False)
    tokens = data["tokens"]
    tokens.update(money.fields("spent", tokens["spent"]))
    tokens["earned_by_worker"] = {w: money.fields("earned", v) for w, v in tokens["earned_by_worker"].items()}
    if json_out:
        output.print_json(data)
        return
    from rich.table import Table

    console = output.out_console()
    table = Table(title=f"intents ({data['total']} in all, success rate {_rate(data['success_rate'])})")
    for column in ("intent", "total", "done", "failed", "cancelled", "success", "median s", "p95 s"):
        table.add_column(column, justify="left" if column == "intent" else "right")
    for intent, c in sorted(data["intents"].items()):
        lat = c["latency_s"]
        table.add_row(
            intent, str(c["total"]), str(c["done"]), str(c["failed"]), str(c["cancelled"]),
            _rate(c["success_rate"]), _num(lat["median"]), _num(lat["p95"]),
        )
    console.print(table)
    users, workers = data["users"], data["workers"]
    console.print(
        f"users: {users['connected']} connected, {users['active_24h']} active in 24 h, {users['all_time']} in all"
    )
    console.print(f"workers: {workers['connected']} connected " + _states(workers["by_state"]))
    console.print(f"$9000 spent: {tokens['spent_9000']}; streamed tokens: {tokens['streamed']}")
    top = sorted(tokens["earned_by_worker"].items(), key=lambda kv: -int(kv[1]["earned"]))[:10]
    for worker, earned in top:
        console.print(f"  earned by {worker}: {earned['earned_9000']} $9000")


def _rate(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _states(by_state: dict[str, int]) -> str:
    return "(" + ", ".join(f"{n} {state}" for state, n in by_state.items() if n) + ")" if any(by_state.values()) else ""

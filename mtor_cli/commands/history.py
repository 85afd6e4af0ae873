"""``mtor history``: your past intents, and ``history show GUID`` to replay one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer

from mtor_cli import options, output

KEY_HELP = "Key file of the identity to ask as (default: your own key)."

group = typer.Typer(
    name="history",
    help="Your past intents (time, intent, model, worker, duration, cost, status), from the broker's journal.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(group)


@group.callback()
def history(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="How many, newest first."),
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List your past intents, newest first (a signed request: only yours)."""
    if ctx.invoked_subcommand is not None:
        return
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "GET", f"/v1/history?limit={limit}", key=key)
    if json_out:
        output.print_json(data)
        return
    from rich.table import Table

    table = Table(title=f"history of {data['address']}")
    for column in ("time", "guid", "intent", "model", "worker", "duration s", "cost", "status"):
        # The guid is what `history show` takes: never wrapped.
        table.add_column(column, justify="right" if column in ("duration s", "cost") else "left",
                         no_wrap=column == "guid", min_width=32 if column == "guid" else None)
    for row in data["history"]:
        table.add_row(
            _when(row["time"]),
            row["guid"],
            row["intent"],
            row["model"] or "",
            row["worker"] or "",
            "" if row["duration_s"] is None else f"{row['duration_s']:.3f}",
            str(row["cost"]),
            row["status"] + (f" ({row['error_code']})" if row.get("error_code") else ""),
        )
    if not data["history"]:
        table.add_row("no intents yet", "", "", "", "", "", "", "")
    output.out_console().print(table)


@group.command("show")
def show(
    guid: str = typer.Argument(..., help="The intent's guid (see `mtor history`)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where to save an image/audio result."),
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the stored entry as one JSON object."),
) -> None:
    """Replay a stored result: its text, and its image or audio saved to a file."""
    from mtor_cli.signed import call_or_fail

    entry = call_or_fail(broker, "GET", f"/v1/history/{guid}", key=key)
    if json_out:
        output.print_json(entry)
        return
    if "error" in entry:
        err = entry["error"]
        output.fail(err["code"], f"intent {guid} ended with an error: {err['message']}", err.get("hint", ""))
    result = entry.get("result")
    if result is None:
        output.fail("unknown_guid", f"intent {guid} has no result yet ({entry['status']})", "try again when it is done")
    if result.get("text"):
        print(result["text"])
    for path in _save(result, out):
        print(path)


def _save(result: dict[str, Any], out: Path | None) -> list[Path]:
    """Write the result's attachments the way `mtor ask` does."""
    from broker.protocol import Attachment, Result
    from mtor_cli.commands.ask import _save_attachments

    attachments = [Attachment(**a) for a in result.get("attachments", [])]
    return _save_attachments(Result(guid=result["guid"], intent=result["intent"], attachments=attachments), out)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")

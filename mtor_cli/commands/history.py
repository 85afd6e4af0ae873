"""``mtor history``: your past intents, and ``history show GUID`` to replay one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mtor_cli import money, options, output

if TYPE_CHECKING:
    from rich.table import Table

SHORT_GUID = 8  # what the table shows and `history show` accepts
FULL_GUID = 32
MAX_LOOKUP = 1000  # intents searched for a short guid

KEY_HELP = "Key file of the identity to ask as (default: your own key)."

group = typer.Typer(
    name="history",
    help="""Your past intents, from the realm's journal.

Without a subcommand: time, guid, intent, prompt and cost of your latest
intents, newest first (`--json` for every field).

Examples:

  mtor history --limit 5

  mtor history show 4f1c2b9e
""",
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
    """List your past intents, newest first (a signed request: only yours).

    Example:

      mtor history --limit 5
    """
    if ctx.invoked_subcommand is not None:
        return
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "GET", f"/v1/history?limit={limit}", key=key)
    for row in data["history"]:
        row.update(money.fields("cost", row["cost"]), **money.fields("price_held", row["price_held"]))
    if json_out:
        output.print_json(data)
        return
    output.out_console().print(history_table(data))


def history_table(data: dict[str, Any]) -> Table:
    """Fits 80 columns: the prompt is what gives way (cut with an ellipsis), never the guid."""
    from rich import box
    from rich.table import Table

    # Expanded to the terminal's width, with the prompt as the only column that
    # takes (ratio) or gives up room: every other cell keeps its natural width.
    table = Table(title=f"history of {data['address']}", box=box.SIMPLE_HEAD, pad_edge=False, expand=True)
    table.add_column("time", no_wrap=True)
    table.add_column("guid", no_wrap=True)
    table.add_column("intent", no_wrap=True)
    table.add_column("prompt", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("$9000", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for row in data["history"]:
        status = row["status"] + (f" ({row['error_code']})" if row.get("error_code") else "")
        table.add_row(
            _when(row["time"]), row["guid"][:SHORT_GUID], row["intent"], _snippet(row.get("prompt") or ""),
            row["cost_9000"], status,
        )  # fmt: skip
    if not data["history"]:
        table.add_row("", "", "", "no intents yet", "", "")
    return table


def _snippet(prompt: str) -> str:
    return " ".join(prompt.split())


@group.command("show")
def show(
    guid: str = typer.Argument(..., help="The intent's guid, or its first characters (see `mtor history`)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where to save an image/audio result."),
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the stored entry as one JSON object."),
) -> None:
    """Replay a stored result: its text, and its image or audio saved to a file.

    Example:

      mtor history show 4f1c2b9e --out again.png
    """
    from mtor_cli.signed import call_or_fail

    entry = call_or_fail(broker, "GET", f"/v1/history/{_full_guid(broker, guid, key)}", key=key)
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


def _full_guid(broker: str | None, guid: str, key: Path | None) -> str:
    """The guid whose first characters ``guid`` is (as `mtor history` shows them)."""
    if len(guid) >= FULL_GUID:
        return guid
    from mtor_cli.signed import call_or_fail

    rows = call_or_fail(broker, "GET", f"/v1/history?limit={MAX_LOOKUP}", key=key)["history"]
    found = {row["guid"] for row in rows if row["guid"].startswith(guid.lower())}
    if len(found) > 1:
        output.fail("usage", f"{guid!r} is the start of {len(found)} of your intents", "give more of the guid")
    if not found:
        output.fail("unknown_guid", f"you have no intent starting with {guid!r}", "list yours with `mtor history`")
    return found.pop()


def _save(result: dict[str, Any], out: Path | None) -> list[Path]:
    """Write the result's attachments the way `mtor ask` does."""
    from broker.protocol import Attachment, Result
    from mtor_cli.commands.ask import _save_attachments

    attachments = [Attachment(**a) for a in result.get("attachments", [])]
    return _save_attachments(Result(guid=result["guid"], intent=result["intent"], attachments=attachments), out)


def _when(ts: float) -> str:
    """Local time: the hour today, the date as well before today."""
    when = dt.datetime.fromtimestamp(ts)
    return when.strftime("%H:%M:%S" if when.date() == dt.date.today() else "%m-%d %H:%M")

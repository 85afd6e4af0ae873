"""``mtor sysop``: the realm's sysops at work, through signed requests.

Every command is signed with your key; the broker checks that the address is
a sysop (``grant``/``revoke``: the realm's operator) and writes each attempt
to its audit log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mtor_cli import options, output

KEY_HELP = "Key file of the sysop's identity (default: your own key)."

group = typer.Typer(
    name="sysop",
    help="Sysop actions: roles, bans, intents, workers, broadcasts.",
    no_args_is_help=True,
)
worker_group = typer.Typer(name="worker", help="Pause, resume or remove one worker.", no_args_is_help=True)
group.add_typer(worker_group)

_broker = options.broker_option()
_key = typer.Option(None, "--key", help=KEY_HELP)
_json = typer.Option(False, "--json", help="Print one JSON object.")
_reason = typer.Option("", "--reason", "-r", help="Why (kept in the audit log; shown to the address).")


def register(app: typer.Typer) -> None:
    app.add_typer(group)


def _act(broker: str | None, key: Path | None, json_out: bool, action: str, payload: dict[str, Any]) -> None:
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "POST", f"/v1/sysop/{action}", payload, key=key)
    if json_out:
        output.print_json(data)
        return
    extra = {k: v for k, v in data.items() if k not in ("ok", "action", "target")}
    print(f"{data['action']} {data['target']}: done" + ("".join(f"; {k}: {v}" for k, v in extra.items())))


@group.command("grant")
def grant(
    address: str = typer.Argument(..., help="Address to make a sysop."),
    broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json,
) -> None:
    """Make ADDRESS a sysop (the realm's operator key only).

    Example:

      mtor sysop grant 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4
    """
    _act(broker, key, json_out, "grant", {"address": address})


@group.command("revoke")
def revoke(
    address: str = typer.Argument(..., help="Address to take the sysop role from."),
    broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json,
) -> None:
    """Take the sysop role from ADDRESS (the realm's operator key only).

    Example:

      mtor sysop revoke 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4
    """
    _act(broker, key, json_out, "revoke", {"address": address})


@group.command("ban")
def ban(
    address: str = typer.Argument(..., help="Address to ban (client or worker)."),
    reason: str = _reason, broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json,
) -> None:
    """Ban ADDRESS: its sessions are cut off now, its live intents end (holds
    released), and it cannot log in or register a worker until unbanned.

    Example:

      mtor sysop ban 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4 --reason "spam"
    """
    _act(broker, key, json_out, "ban", {"address": address, "reason": reason})


@group.command("unban")
def unban(
    address: str = typer.Argument(..., help="Address to unban."),
    broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json,
) -> None:
    """Lift the ban on ADDRESS.

    Example:

      mtor sysop unban 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4
    """
    _act(broker, key, json_out, "unban", {"address": address})


@group.command("terminate")
def terminate(
    guid: str = typer.Argument(..., help="The intent to end."),
    reason: str = _reason, broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json,
) -> None:
    """End a queued or running intent; its hold is released.

    Example:

      mtor sysop terminate 4f1c2b9e0d7a4c3e8b6a5d4c3b2a1f0e --reason "stuck"
    """
    _act(broker, key, json_out, "terminate", {"guid": guid, "reason": reason})


@group.command("broadcast")
def broadcast(
    message: str = typer.Argument(..., help="The message (shown live in every connected CLI and TUI)."),
    broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json,
) -> None:
    """Send MESSAGE to every connected client and worker.

    Example:

      mtor sysop broadcast "the realm restarts in 5 minutes"
    """
    _act(broker, key, json_out, "broadcast", {"message": message})


@group.command("workers")
def workers(broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json) -> None:
    """Connected workers with their load, health and trust (maintenance, pauses).

    Example:

      mtor sysop workers --json
    """
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "GET", "/v1/sysop/workers", key=key)
    if json_out:
        output.print_json(data)
        return
    from rich.table import Table

    table = Table(title="workers")
    for column in ("id", "name", "address", "intents", "busy", "health", "trust", "ok/aborted", "reason"):
        # An address is copied whole into `mtor sysop ban ADDRESS`: never split.
        table.add_column(column, no_wrap=column == "address", min_width=42 if column == "address" else None)
    for w in data["workers"]:
        trust = w.get("trust") or {}
        table.add_row(
            w["id"], w["name"], w["address"], ", ".join(c["intent"] for c in w["capabilities"]),
            f"{w['running']}/{w['slots']}", w["health"]["state"],
            trust.get("state", "") + ("" if trust.get("trusted", True) else " (untrusted)"),
            f"{trust.get('completed', 0)}/{trust.get('aborted', 0)}", trust.get("reason") or "",
        )
    if not data["workers"]:
        table.add_row("no workers connected", "", "", "", "", "", "", "", "")
    output.out_console().print(table)


@group.command("audit")
def audit(
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000, help="How many entries, newest first."),
    broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json,
) -> None:
    """The audit log: every sysop action and refusal, newest first.

    Example:

      mtor sysop audit --limit 20
    """
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "GET", f"/v1/sysop/audit?limit={limit}", key=key)
    if json_out:
        output.print_json(data)
        return
    import datetime as dt

    for e in data["audit"]:
        when = dt.datetime.fromtimestamp(e["ts"]).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{when}  {e['outcome']:<7} {e['actor']}  {e['action']} {e['target']}  {e['detail'] or ''}")


def _worker_action(action: str) -> Any:
    def command(
        worker_id: str = typer.Argument(..., metavar="ID", help="Worker id (see `mtor sysop workers`)."),
        reason: str = _reason, broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json,
    ) -> None:
        _act(broker, key, json_out, action, {"id": worker_id, "reason": reason})

    command.__doc__ = {
        "pause": "Give the worker no new work (running jobs finish).",
        "resume": "Lift a pause or maintenance; the worker gets work again.",
        "remove": "Disconnect the worker (its jobs go elsewhere); it may not register again for 10 minutes.",
    }[action] + f"\n\nExample:\n\n  mtor sysop worker {action} w-3f2a --reason \"maintenance\"\n"
    return command


for _action in ("pause", "resume", "remove"):
    worker_group.command(_action)(_worker_action(_action))

"""``mtor keys``: API keys for OpenAI-compatible clients (docs/openai.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mtor_cli import options, output

group = typer.Typer(
    name="keys",
    help="""API keys for OpenAI-compatible clients (the openai package, `llm`, curl, ...).

A key is bound to your address: requests made with it are charged to you like
`mtor ask`, up to the key's --limit. The realm keeps only a hash of it.

  mtor keys create --name laptop
  OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 OPENAI_API_KEY=sk-mtor-... python my_app.py
""",
    no_args_is_help=True,
)

_broker = options.broker_option()
_key = typer.Option(None, "--key", help="Key file of the identity the API key belongs to (default: your own key).")
_json = typer.Option(False, "--json", help="Print one JSON object (amounts in base units, as strings).")


def register(app: typer.Typer) -> None:
    app.add_typer(group)


def _base_url(broker: str | None) -> str:
    from mtor_cli.client import http_url
    from mtor_cli.signed import broker_url

    return http_url(broker_url(broker), "/v1")


def _spend(data: dict[str, Any]) -> str:
    from ledger.units import format_amount

    if data["limit"] is None:
        return "no limit"
    return f"{format_amount(int(data['spent']))} of {format_amount(int(data['limit']), symbol=True)} spent"


@group.command("create")
def create(
    name: str = typer.Option("", "--name", "-n", help="A name to recognise the key by (e.g. the app using it)."),
    limit: str | None = typer.Option(
        None, "--limit", help="The most the key may spend, in $9000 (default in a paid realm: 10)."
    ),
    broker: str | None = _broker,
    key: Path | None = _key,
    json_out: bool = _json,
) -> None:
    """Create an API key; its secret is printed once and never stored by the realm.

    Example: mtor keys create --name laptop --limit 5
    """
    from mtor_cli.signed import call_or_fail

    payload: dict[str, Any] = {"name": name}
    if limit is not None:
        from ledger.errors import LedgerError
        from ledger.units import parse_amount

        try:
            payload["limit"] = str(parse_amount(limit, allow_zero=True))
        except LedgerError as exc:
            output.fail("usage", exc.message, exc.hint)
    data = call_or_fail(broker, "POST", "/v1/keys", payload, key=key)
    base = _base_url(broker)
    if json_out:
        output.print_json({**data, "base_url": base})
        return
    print(data["secret"])
    spend = "free realm: nothing is charged"
    if data["paid"]:
        from ledger.units import format_amount

        spend = f"may spend up to {format_amount(int(data['limit']), symbol=True)}, charged to your address"
    output.note(
        f"API key {data['id']}{' (' + data['name'] + ')' if data['name'] else ''} for {data['address']}: {spend}.\n"
        f"It is shown only now. Use it with OPENAI_BASE_URL={base} OPENAI_API_KEY=<the key>"
    )


@group.command("list")
def list_keys(broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json) -> None:
    """Your API keys that are not revoked (the secrets are not shown again)."""
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "GET", "/v1/keys", key=key)
    if json_out:
        output.print_json(data)
        return
    import datetime as dt

    from rich.table import Table

    def when(ts: float | None) -> str:
        return "-" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")

    table = Table(title=f"API keys of {data['address']}")
    for column in ("id", "name", "key", "created", "last used", "spending"):
        table.add_column(column)
    for k in data["keys"]:
        spending = _spend(k) if data["paid"] else "free realm"
        table.add_row(k["id"], k["name"] or "-", k["key"], when(k["created"]), when(k["last_used"]), spending)
    if not data["keys"]:
        table.add_row("no keys: create one with `mtor keys create`", "", "", "", "", "")
    output.out_console().print(table)


@group.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key's id (key_...), as `mtor keys list` shows it."),
    broker: str | None = _broker,
    key: Path | None = _key,
    json_out: bool = _json,
) -> None:
    """Revoke an API key at once; its running requests end and their holds are released."""
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "DELETE", f"/v1/keys/{key_id}", key=key)
    if json_out:
        output.print_json(data)
        return
    print(f"revoked {data['id']}" + (f"; {data['requests_ended']} running request(s) ended" if data["requests_ended"] else ""))

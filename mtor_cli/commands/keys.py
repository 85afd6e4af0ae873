"""``mtor keys``: API keys for OpenAI-compatible clients (docs/openai.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mtor_cli import money, options, output

group = typer.Typer(
    name="keys",
    help="""API keys for OpenAI-compatible clients (openai, llm, curl).

A key is bound to your address: requests made with it are charged to you like
`mtor ask`, up to the key's --limit. The realm keeps only a hash of it.

  mtor keys create --name laptop
  OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 OPENAI_API_KEY=sk-mtor-... python my_app.py
""",
    no_args_is_help=True,
)

_broker = options.broker_option()
_key = typer.Option(None, "--key", help="Key file of the identity the API key belongs to (default: your own key).")
_json = options.json_option()


def register(app: typer.Typer) -> None:
    app.add_typer(group)


def _base_url(broker: str | None) -> str:
    from mtor_cli.client import http_url
    from mtor_cli.signed import broker_url

    return http_url(broker_url(broker), "/v1")


def _for_scripts(row: dict[str, Any]) -> dict[str, Any]:
    """A key as --json shows it: each amount in base units (a string) and in $9000."""
    limit = None if row["limit"] is None else int(row["limit"])
    return {**row, **money.fields("limit", limit), **money.fields("spent", int(row["spent"]))}


def _spending(row: dict[str, Any]) -> str:
    if row["limit"] is None:
        return "no limit"
    return f"{money.fmt(int(row['spent']))} of {money.fmt(int(row['limit']))} $9000"


@group.command("create")
def create(
    name: str = typer.Option("", "--name", "-n", help="A name to recognise the key by (e.g. the app using it)."),
    limit: str | None = typer.Option(
        None, "--limit", help="The most the key may spend, in $9000 (default in a paid realm: 10).", show_default=False
    ),
    broker: str | None = _broker,
    key: Path | None = _key,
    json_out: bool = _json,
) -> None:
    """Create an API key; its secret is printed once and never stored by the realm.

    Example:

      mtor keys create --name laptop --limit 5
    """
    from mtor_cli.client import RealmError
    from mtor_cli.identity import load_or_create_account
    from mtor_cli.signed import broker_url

    payload: dict[str, Any] = {"name": name}
    if limit is not None:
        payload["limit"] = str(money.parse(limit, "--limit"))
    try:
        data = create_key(broker_url(broker), load_or_create_account(key), payload)
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    base = _base_url(broker)
    if json_out:
        output.print_json({**_for_scripts(data), "base_url": base})
        return
    print(data["secret"])
    spend = "free realm: nothing is charged"
    if data["paid"]:
        spend = (f"may spend up to {money.fmt(int(data['limit']))} $9000, charged to your address"
                 " under the spending authorisation you just signed for it")
    output.note(
        f"API key {data['id']}{' (' + data['name'] + ')' if data['name'] else ''} for {data['address']}: {spend}.\n"
        f"It is shown only now. Use it with OPENAI_BASE_URL={base} OPENAI_API_KEY=<the key>"
    )


def create_key(url: str, account: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/keys`` as ``account``. A paid realm answers ``bad_authorisation`` with what
    the key needs signed (everything the user committed, its other keys' unspent limits and
    this key's limit: docs/openai.md); sign exactly that ``Spend`` and send again."""
    from mtor_cli.client import RealmError
    from mtor_cli.signed import call

    try:
        return dict(call(url, "POST", "/v1/keys", payload, account))
    except RealmError as exc:
        needed, chain_id = _whole(exc.detail.get("needed")), _whole(exc.detail.get("chain_id"))
        contract = exc.detail.get("contract")
        if exc.code != "bad_authorisation" or needed is None or chain_id is None or not isinstance(contract, str) \
                or "authorisation" in payload:
            raise
    from ledger.authorisation import Terms, sign

    signature = sign(account.key, Terms(chain_id, contract), account.address, needed)
    signed = {**payload, "authorisation": {"total": str(needed), "signature": signature}}
    return dict(call(url, "POST", "/v1/keys", signed, account))


def _whole(value: object) -> int | None:
    """An amount as REST sends it: a JSON integer, or a string of digits past 2**53."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


@group.command("list")
def list_keys(broker: str | None = _broker, key: Path | None = _key, json_out: bool = _json) -> None:
    """Your API keys that are not revoked (the secrets are not shown again).

    Example:

      mtor keys list --json
    """
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "GET", "/v1/keys", key=key)
    if json_out:
        output.print_json({**data, "keys": [_for_scripts(k) for k in data["keys"]]})
        return
    import datetime as dt

    from rich.table import Table

    def when(ts: float | None) -> str:
        return "-" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")

    table = Table(title=f"API keys of {data['address']}")
    for column in ("id", "name", "key", "created", "last used", "spent"):
        table.add_column(column, no_wrap=column in ("id", "key"))
    for k in data["keys"]:
        spending = _spending(k) if data["paid"] else "free realm"
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
    """Revoke an API key at once; its running requests end and their holds are released.

    Example:

      mtor keys revoke key_3f2a9c01b7de
    """
    import re

    from mtor_cli.signed import call_or_fail

    if not re.fullmatch(r"key_[0-9a-f]{12}", key_id):
        output.fail("usage", f"{key_id!r} is not a key id", "ids look like key_3f2a9c01b7de; see `mtor keys list`")
    data = call_or_fail(broker, "DELETE", f"/v1/keys/{key_id}", key=key)
    if json_out:
        output.print_json(_for_scripts(data))
        return
    print(f"revoked {data['id']}" + (f"; {data['requests_ended']} running request(s) ended" if data["requests_ended"] else ""))

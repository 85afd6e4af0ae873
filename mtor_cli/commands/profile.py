"""``mtor profile``: your nickname and standing in a realm."""

from __future__ import annotations

from pathlib import Path

import typer

from mtor_cli import options, output

KEY_HELP = "Key file of the identity to act as (default: your own key)."

group = typer.Typer(name="profile", help="Your profile in a realm: nickname, sysop role, bans.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(group)


@group.command("show")
def show(
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Your address, nickname, and whether you are a sysop or banned.

    Example:

      mtor profile show --broker ws://realm.example:8765
    """
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "GET", "/v1/profile", key=key)
    if json_out:
        output.print_json(data)
        return
    role = "operator" if data["operator"] else "sysop" if data["sysop"] else "user"
    print(f"{data['address']}  nickname: {data['nickname'] or '-'}  role: {role}"
          + (f"  BANNED: {data['banned']}" if data["banned"] else ""))


@group.command("set-nickname")
def set_nickname(
    nickname: str = typer.Argument(..., help="3-32 characters: a letter, then letters, digits, '_', '.' or '-'."),
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Bind a nickname to your address (unique in the realm; case does not count).

    Example:

      mtor profile set-nickname ada
    """
    from mtor_cli.signed import call_or_fail

    data = call_or_fail(broker, "PUT", "/v1/profile/nickname", {"nickname": nickname}, key=key)
    if json_out:
        output.print_json(data)
        return
    print(f"{data['address']} is now {data['nickname']}")

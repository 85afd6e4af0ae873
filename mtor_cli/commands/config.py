"""``mtor config``: read and change settings in the user's config.toml."""

from __future__ import annotations

from typing import Any

import typer

from mtor_cli import output
from mtor_cli.config_keys import help_text

group = typer.Typer(
    name="config",
    help=f"""Your settings in config.toml: path, list, get, set, unset.

Keys are words joined by dots; values are stored as text. The keys mtor reads:

{help_text()}

Examples:

  mtor config set broker ws://realm.example:8765

  mtor config list

  mtor config get broker
""",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(group)


def _fail(exc: Exception) -> None:
    output.fail("usage", getattr(exc, "message", str(exc)), getattr(exc, "hint", ""))


@group.command("get")
def get(
    key: str = typer.Argument(..., help="e.g. location, units, email.address"),
    json_out: bool = typer.Option(False, "--json", help='Print {"key": ..., "value": ...}.'),
) -> None:
    """Print a setting's value. Exit 1 when it is not set.

    Example:

      mtor config get broker
    """
    from mtor_cli import settings

    try:
        value = settings.get(key)
    except settings.SettingsError as exc:
        _fail(exc)
    if json_out:
        output.print_json({"key": key, "value": value})
    elif value is not None:
        print(value)
    if value is None:
        if not json_out:
            output.note(f"{key} is not set")
        raise SystemExit(output.EXIT_FAILED)


@group.command("set")
def set_(
    key: str = typer.Argument(..., help="e.g. location"),
    value: str = typer.Argument(..., help='e.g. "Paris, France"'),
) -> None:
    """Set a setting (the file stays readable by you only).

    Example:

      mtor config set broker ws://realm.example:8765
    """
    from mtor_cli import settings
    from mtor_cli.config_keys import BY_NAME, problem

    wrong = problem(key, value)
    if wrong is not None:
        output.fail("usage", f"{key} = {value!r}: {wrong}", f"e.g. mtor config set {key} {BY_NAME[key].example}")
    if key not in BY_NAME:
        output.note(f"note: mtor itself does not read {key!r} (see `mtor config list`)")
    try:
        settings.set_value(key, value)
    except settings.SettingsError as exc:
        _fail(exc)
    output.note(f"{key} = {value!r}")


@group.command("unset")
def unset(key: str = typer.Argument(..., help="e.g. location")) -> None:
    """Remove a setting. Exit 1 when it was not set.

    Example:

      mtor config unset broker
    """
    from mtor_cli import settings

    try:
        removed = settings.unset(key)
    except settings.SettingsError as exc:
        _fail(exc)
    if not removed:
        output.note(f"{key} was not set")
        raise SystemExit(output.EXIT_FAILED)
    output.note(f"{key} removed")


@group.command("path")
def path() -> None:
    """Where your settings live (config.toml; $MTOR_HOME moves it).

    Example:

      mtor config path
    """
    from mtor_cli.paths import config_file

    print(config_file())


@group.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help='Print {"path", "settings": [...]}.')) -> None:
    """Every key mtor reads, with its value where you set one, and any other key you set.

    Example:

      mtor config list --json
    """
    from mtor_cli import settings
    from mtor_cli.config_keys import BY_NAME, KEYS
    from mtor_cli.paths import config_file

    try:
        values = dict(_flat(settings.get_all()))
    except settings.SettingsError as exc:
        _fail(exc)
    rows = [{"key": k.name, "value": values.pop(k.name, None), "help": k.help} for k in KEYS]
    rows += [{"key": name, "value": value, "help": None} for name, value in sorted(values.items())]
    if json_out:
        output.print_json({"path": str(config_file()), "settings": rows})
        return
    from rich.table import Table

    table = Table(title=str(config_file()), show_lines=False)
    for column in ("key", "value", "what it does"):
        table.add_column(column, overflow="fold")
    for row in rows:
        shown = "" if row["value"] is None else str(row["value"])
        table.add_row(row["key"], shown, row["help"] or ("(not read by mtor)" if row["key"] not in BY_NAME else ""))
    output.out_console().print(table)


def _flat(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, value in table.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", value))
    return out

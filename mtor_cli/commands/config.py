"""``mtor config``: read and change settings in the user's config.toml."""

from __future__ import annotations

import typer

from mtor_cli import output

group = typer.Typer(
    name="config",
    help="""Read and change your settings (config.toml in mtor's config folder).

Keys are words joined by dots; values are stored as text.

Examples:

  mtor config set location "Oslo, Norway"

  mtor config set units imperial

  mtor config get location
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
    """Print a setting's value. Exit 1 when it is not set."""
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
    """Set a setting (the file stays readable by you only)."""
    from mtor_cli import settings

    try:
        settings.set_value(key, value)
    except settings.SettingsError as exc:
        _fail(exc)
    output.note(f"{key} = {value!r}")


@group.command("unset")
def unset(key: str = typer.Argument(..., help="e.g. location")) -> None:
    """Remove a setting. Exit 1 when it was not set."""
    from mtor_cli import settings

    try:
        removed = settings.unset(key)
    except settings.SettingsError as exc:
        _fail(exc)
    if not removed:
        output.note(f"{key} was not set")
        raise SystemExit(output.EXIT_FAILED)
    output.note(f"{key} removed")

"""``mtor realm models``: what the embedded realm serves, from where, and what is missing."""

from __future__ import annotations

from pathlib import Path

import typer

from mtor_cli import output

group = typer.Typer(
    name="models",
    help="""What the embedded realm serves on this machine, from where, and what is missing.

Without a subcommand: the table (or --json). Choose a model for an intent
with `set`; the realm serves it from its next start.

Examples:

  mtor realm models

  mtor realm models set imagine ./sd-model

  mtor realm models unset imagine
""",
    invoke_without_command=True,
)


def register_on(realm_group: typer.Typer) -> None:
    realm_group.add_typer(group)


@group.callback()
def models(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from mtor_cli import realm, realm_models

    rows = realm_models.catalogue()
    live = realm.served_now()
    if json_out:
        output.print_json(
            {"running": live is not None, "models": [{**r.to_dict(), "serving": r.intent in (live or ())} for r in rows]}
        )
        return
    from rich.table import Table

    table = Table(title="the embedded realm's intents" + ("" if live is not None else " (not running)"))
    for column in ("intent", "served", "model", "from", "missing / to add"):
        table.add_column(column)
    for r in rows:
        if not r.ready:
            served = "[red]no[/red]"
        elif live is not None and r.intent in live:
            served = "[green]yes[/green]"
        else:
            served = "on first use" if live is not None else "yes"
        table.add_row(r.intent, served, r.model or "-", r.source or "-", f"{r.missing}\n-> {r.add}" if r.add else "")
    output.out_console().print(table)


@group.command("set")
def set_model(
    intent: str = typer.Argument(..., help="chat, speech, embed, vision or imagine"),
    path: Path = typer.Argument(..., help="The model's folder (or file), e.g. ./sd-model"),
) -> None:
    """Serve ``intent`` from the model at PATH (from the realm's next start).

    Example:

      mtor realm models set imagine ./sd-model
    """
    from mtor_cli import settings
    from mtor_cli.realm_models import CHOOSABLE, CONFIG_TABLE

    if intent not in CHOOSABLE:
        output.fail("usage", f"{intent!r} takes no model of your choice", "choose for " + ", ".join(CHOOSABLE))
    if not path.exists():
        output.fail("usage", f"{path} does not exist", "give the model's folder, e.g. ./sd-model")
    settings.set_value(f"{CONFIG_TABLE}.{intent}", str(path.resolve()))
    output.note(f"{intent} will be served from {path.resolve()}; restart the realm to use it: mtor realm stop")


@group.command("unset")
def unset_model(intent: str = typer.Argument(..., help="e.g. imagine")) -> None:
    """Go back to the default for ``intent`` (none for vision and imagine).

    Example:

      mtor realm models unset imagine
    """
    from mtor_cli import settings
    from mtor_cli.realm_models import CONFIG_TABLE

    if not settings.unset(f"{CONFIG_TABLE}.{intent}"):
        output.note(f"no model was chosen for {intent}")
        raise SystemExit(output.EXIT_FAILED)
    output.note(f"{intent} is back to its default; restart the realm to use it: mtor realm stop")

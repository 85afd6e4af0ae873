"""The ``mtor`` command: wires the command groups together.

Nothing heavy is imported here or by the command modules at import time, so
``mtor --help`` stays fast (checked by tests/mtor_cli/test_app.py).
"""

from __future__ import annotations

import importlib

import typer

# One line per command module in mtor_cli/commands/ (each has register(app)).
COMMAND_MODULES: tuple[str, ...] = (
    "ask",
    "realm",
    "broker",
    "worker",
    "wallet",
    "ledger",
    "chain",
    "pricing",
    "listen",
    "tui",
    "history",
    "stats",
    "profile",
    "sysop",
    "keys",
)

HELP = """MTOR (Multi-Tronic Operating Realm): ask a realm of volunteer AI workers.

[bold]mtor ask "Computer, tell me a joke"[/bold] answers from the embedded default realm
(a local broker + chat worker started in the background) unless --broker,
MTOR_BROKER or `broker = "ws://..."` in the config file names another one.

Exit codes: 0 ok, 1 request failed, 2 usage error, 3 broker unreachable,
4 no worker / queue full, 5 timeout, 6 insufficient funds, 130 interrupted.
"""


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"mtor {version('mtor')}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="mtor",
        help=HELP,
        no_args_is_help=True,
        rich_markup_mode="rich",
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """MTOR: a terminal-first intent broker for crowd-sourced AI."""

    for name in COMMAND_MODULES:
        importlib.import_module(f"mtor_cli.commands.{name}").register(app)
    return app


app = build_app()


def main() -> None:
    try:
        app(prog_name="mtor")
    except KeyboardInterrupt:
        raise SystemExit(130) from None

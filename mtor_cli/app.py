"""The ``mtor`` command: wires the command groups together.

Nothing heavy is imported here or by the command modules at import time, so
``mtor --help`` stays fast (checked by tests/mtor_cli/test_app.py).

Every way a command can end badly ends in ONE line on stderr with a stable
code and a hint, and an exit status from the README's table: usage errors
from option parsing (exit 2), a missing optional model stack (its install
command), and, as a last resort, any other exception (``internal``; set
``MTOR_DEBUG=1`` for the traceback). :class:`MtorGroup` does this for every
command, in ``mtor`` itself and in tests that invoke the app in-process.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from mtor_cli import output

# One line per command module in mtor_cli/commands/ (each has register(app)).
COMMAND_MODULES: tuple[str, ...] = (
    "ask",
    "chat",
    "models",
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
    "config",
    "email",
)

HELP = """MTOR (Multi-Tronic Operating Realm): ask a realm of volunteer AI workers.

[bold]mtor ask "Computer, tell me a joke"[/bold] answers from the embedded default realm
(a local broker + chat worker started in the background) unless --broker,
MTOR_BROKER or `broker = "ws://..."` in the config file names another one.

Amounts of $9000 are decimals for people (--max-price 0.02); --json output
gives base units (10^18 per $9000) beside the decimal.

Exit codes: 0 ok, 1 request failed, 2 usage error, 3 broker unreachable,
4 no worker / queue full, 5 timeout, 6 insufficient funds, 130 interrupted.
"""

ENV_DEBUG = "MTOR_DEBUG"
HELP_OPTIONS = ["-h", "--help"]

def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"mtor {version('mtor')}")
        raise typer.Exit()

def _quiet_flags(command: Any) -> None:
    """Boolean flags take no value: show none (typer would print ``<bool>``)."""
    ctx = typer.Context(command, help_option_names=HELP_OPTIONS)
    for param in [*command.params, command.get_help_option(ctx)]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _quiet_flags(sub)

class MtorGroup(TyperGroup):
    """The root command: one error line for every failure, flags without a metavar."""


    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        _quiet_flags(self)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except SystemExit:
            raise
        except BaseException as exc:  # every failure becomes the one line
            code = _report(exc)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

def _report(exc: BaseException) -> int:
    """Print the one error line for ``exc``; returns the exit status."""
    exceptions = importlib.import_module(typer.BadParameter.__module__)  # typer's (vendored) click
    if isinstance(exc, getattr(exceptions, "NoArgsIsHelpError", ())):
        # `mtor wallet`-style groups called bare: their help is the answer.
        print(exc.ctx.get_help())  # type: ignore[attr-defined]
        return output.EXIT_OK
    if isinstance(exc, exceptions.UsageError):
        ctx = exc.ctx
        where = f"`{ctx.command_path} --help`" if ctx is not None else "`mtor --help`"
        print(output.error_line("usage", _one_line(exc.format_message()), f"see {where}"), file=sys.stderr)
        return output.EXIT_USAGE
    if isinstance(exc, exceptions.ClickException):
        print(output.error_line("usage", _one_line(exc.format_message())), file=sys.stderr)
        return int(exc.exit_code)
    if isinstance(exc, (KeyboardInterrupt, typer.Abort, getattr(exceptions, "Abort", typer.Abort))):
        print(output.error_line("interrupted", "interrupted"), file=sys.stderr)
        return output.EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        return output.EXIT_FAILED  # the reader went away (`mtor history | head`): nothing to say
    if os.environ.get(ENV_DEBUG):
        raise exc
    from mtor_cli.missing import describe

    code, message, hint = describe(exc)
    print(output.error_line(code, message, hint), file=sys.stderr)
    return output.exit_code_for(code)

def _one_line(text: str) -> str:
    return " ".join(text.split())

def build_app() -> typer.Typer:
    app = typer.Typer(
        name="mtor",
        help=HELP,
        cls=MtorGroup,
        no_args_is_help=True,
        rich_markup_mode="rich",
        add_completion=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": HELP_OPTIONS},
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
    app(prog_name="mtor")

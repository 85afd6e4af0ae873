"""Options that several commands share, spelled once so they read the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

BROKER_HELP = "Realm broker, ws://HOST:PORT. Default: $MTOR_BROKER, the config file's, else the embedded realm."


def broker_option() -> Any:
    """``--broker/-b URL`` (also $MTOR_BROKER); None means the configured or embedded realm."""
    return typer.Option(None, "--broker", "-b", envvar="MTOR_BROKER", help=BROKER_HELP, show_default=False)


def resolve_broker(option: str | None, while_starting: Callable[[], object] | None = None) -> str:
    """The broker to talk to: ``--broker``, else $MTOR_BROKER or the config
    file's, else the embedded realm (started if it is not running; then
    ``while_starting`` runs while it boots)."""
    from mtor_cli import output
    from mtor_cli.paths import config_file, configured_broker

    if option:
        return option
    try:
        url = configured_broker()
    except ValueError as exc:  # tomllib.TOMLDecodeError
        output.fail("usage", f"cannot read {config_file()}: {exc}", "fix or remove the file")
    if url is None:
        from mtor_cli.realm import ensure_realm

        url = ensure_realm(while_starting=while_starting)
    return url

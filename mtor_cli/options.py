"""Options that several commands share, spelled once so they read the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

BROKER_HELP = "Realm broker, ws://HOST:PORT. Default: $MTOR_BROKER, the config file's, else the embedded realm."
JSON_HELP = "Print one JSON object (amounts in base units, as strings, beside decimals)."


def _checked_broker(value: str | None) -> str | None:
    """A bad ``--broker``/$MTOR_BROKER is a usage error before anything is sent."""
    if value is None:
        return None
    from mtor_cli.client import RealmError, check_urls

    try:
        check_urls(value)
    except RealmError as exc:
        raise typer.BadParameter(f"{exc.message} ({exc.hint})") from None
    return value


def broker_option(help: str = BROKER_HELP) -> Any:
    """``--broker/-b URL`` (also $MTOR_BROKER); None means the configured or embedded realm."""
    return typer.Option(
        None, "--broker", "-b", envvar="MTOR_BROKER", help=help, show_default=False, callback=_checked_broker
    )


def json_option(help: str = JSON_HELP) -> Any:
    return typer.Option(False, "--json", help=help)


def configured_broker() -> str | None:
    """$MTOR_BROKER or the config file's broker (checked), else None."""
    from mtor_cli import output
    from mtor_cli.client import RealmError, check_urls
    from mtor_cli.paths import config_file, configured_broker

    try:
        url = configured_broker()
    except ValueError as exc:  # tomllib.TOMLDecodeError
        output.fail("usage", f"cannot read {config_file()}: {exc}", "fix or remove the file")
    if url is not None:
        try:
            check_urls(url)
        except RealmError as exc:
            output.fail("usage", f"the configured broker {exc.message}", f"fix `broker` in {config_file()}")
    return url


def resolve_broker(option: str | None, while_starting: Callable[[], object] | None = None) -> str:
    """The broker to talk to: ``--broker``, else $MTOR_BROKER or the config
    file's, else the embedded realm (started if it is not running; then
    ``while_starting`` runs while it boots)."""
    if option:
        return option
    url = configured_broker()
    if url is None:
        from mtor_cli.realm import ensure_realm

        url = ensure_realm(while_starting=while_starting)
    return url

"""``mtor email``: connect your mailbox for the email intent (login, status, logout)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from mtor_cli import output

group = typer.Typer(
    name="email",
    help="""Connect your mailbox for the email intent.

Then "read my latest emails" and "email Bob about ..." work.

Gmail signs in with OAuth2 (your browser opens; see docs/email.md for the
one-time Google Cloud setup). Other providers take an app password, made on
the provider's account page. The settings go to your config.toml, readable
by you only; the email worker runs only on your own machine.

Examples:

  mtor email login you@gmail.com --client-secret-file client_secret.json

  mtor email login you@fastmail.com             (asks for the app password)

  mtor email login you@example.org --imap-host imap.example.org --smtp-host smtp.example.org
""",
    no_args_is_help=True,
)

SECRET_KEYS = ("password", "client_secret", "refresh_token")
ENV_PASSWORD = "MTOR_EMAIL_PASSWORD"


def register(app: typer.Typer) -> None:
    app.add_typer(group)


@group.command("login")
def login(
    address: str = typer.Argument(..., help="Your email address."),
    oauth: bool | None = typer.Option(
        None, "--oauth/--app-password", help="Sign in with OAuth2 (default for Gmail) or an app password."
    ),
    client_secret_file: Path | None = typer.Option(
        None, "--client-secret-file", help="The OAuth client JSON downloaded from the Google Cloud console."
    ),
    client_id: str | None = typer.Option(None, "--client-id", help="OAuth client id (instead of the file)."),
    client_secret: str | None = typer.Option(None, "--client-secret", help="OAuth client secret (with --client-id)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help=f"Read the app password from stdin (or set ${ENV_PASSWORD})."
    ),
    name: str | None = typer.Option(None, "--name", help="Your name on the mail you send."),
    username: str | None = typer.Option(None, "--username", help="Login name, if not the address."),
    imap_host: str | None = typer.Option(None, "--imap-host", help="IMAP server (known providers need none)."),
    imap_port: int | None = typer.Option(None, "--imap-port", min=1, max=65535),
    imap_security: str | None = typer.Option(None, "--imap-security", help="ssl, starttls or none."),
    smtp_host: str | None = typer.Option(None, "--smtp-host", help="SMTP server (known providers need none)."),
    smtp_port: int | None = typer.Option(None, "--smtp-port", min=1, max=65535),
    smtp_security: str | None = typer.Option(None, "--smtp-security", help="ssl, starttls or none."),
    browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the sign-in page in a browser."),
    check: bool = typer.Option(True, "--check/--no-check", help="Log in to both servers before saving."),
    timeout: float = typer.Option(300.0, "--timeout", min=1, help="Seconds to wait for the browser sign-in."),
    json_out: bool = typer.Option(False, "--json", help="Print the saved settings (no secrets) as JSON."),
) -> None:
    """Sign in to your mailbox and save the settings the email worker uses.

    Examples:

      mtor email login you@gmail.com --client-secret-file client_secret.json

      mtor email login you@fastmail.com
    """
    from mtor_cli import paths, settings
    from worker.mail import AccountError, MailAccount, TokenSource, is_gmail

    values: dict[str, Any] = {"address": address}
    for key, value in (
        ("name", name), ("username", username),
        ("imap_host", imap_host), ("imap_port", imap_port), ("imap_security", imap_security),
        ("smtp_host", smtp_host), ("smtp_port", smtp_port), ("smtp_security", smtp_security),
    ):  # fmt: skip
        if value is not None:
            values[key] = value
    use_oauth = is_gmail(address) if oauth is None else oauth
    if use_oauth:
        values.update(_oauth(address, client_secret_file, client_id, client_secret, browser, timeout))
    else:
        values.update(auth="password", password=_password(address, password_stdin))
    try:
        account = MailAccount.from_options(values)
    except AccountError as exc:
        output.fail("usage", exc.message, exc.hint)
    if check:
        _check(account, TokenSource(account.token_url, account.client_id, account.client_secret,
                                    account.refresh_token) if use_oauth else None)  # fmt: skip
    # The account is replaced as a whole; other [email] settings (summaries) stay.
    kept = {k: v for k, v in (settings.get("email") or {}).items() if k not in MailAccount.__dataclass_fields__}
    try:
        settings.update("email", {**kept, **values})
    except settings.SettingsError as exc:
        output.fail("usage", exc.message, exc.hint)
    shown = _public(values)
    if json_out:
        output.print_json({**shown, "config": str(paths.config_file())})
    else:
        output.note(
            f"signed in as {address} ({'OAuth2' if use_oauth else 'app password'}); "
            f"saved to {paths.config_file()} (readable by you only)"
        )


def _oauth(
    address: str, secret_file: Path | None, client_id: str | None, client_secret: str | None, browser: bool,
    timeout: float,
) -> dict[str, Any]:  # fmt: skip
    from mtor_cli import settings
    from mtor_cli.email_login import Client, sign_in
    from worker.mail import OAuthError

    try:
        if secret_file is not None:
            client = Client.from_file(secret_file)
        elif client_id and client_secret:
            client = Client(client_id, client_secret)
        else:
            stored = settings.get("email") or {}
            if not (stored.get("client_id") and stored.get("client_secret")):
                output.fail(
                    "usage",
                    "OAuth sign-in needs your OAuth client (a Desktop app in the Google Cloud console)",
                    "pass --client-secret-file client_secret.json (docs/email.md shows how to make one), "
                    "or use --app-password",
                )
            client = Client(stored["client_id"], stored["client_secret"])
        tokens = sign_in(client, address, show=output.note, open_browser=browser, timeout_s=timeout)
    except OAuthError as exc:
        output.fail(exc.code, exc.message, "run `mtor email login` again")
    return {
        "auth": "oauth2",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "token_url": client.token_url,
        "refresh_token": tokens["refresh_token"],
    }


def _password(address: str, from_stdin: bool) -> str:
    if from_stdin:
        secret = sys.stdin.readline().strip()
    elif os.environ.get(ENV_PASSWORD):
        secret = os.environ[ENV_PASSWORD]
    elif sys.stdin is not None and sys.stdin.isatty():
        import getpass

        secret = getpass.getpass(f"app password for {address}: ", stream=sys.stderr)
    else:
        output.fail("usage", "no app password given", f"pipe it with --password-stdin or set ${ENV_PASSWORD}")
    if not secret:
        output.fail("usage", "the app password is empty", "make one on your provider's account page")
    return secret


def _check(account: Any, tokens: Any) -> None:
    from worker.backends.base import JobError
    from worker.mail import Imap, check_login

    output.note(f"checking {account.imap_host} (IMAP) and {account.smtp_host} (SMTP) ...")
    try:
        with Imap(account, tokens):
            pass
        check_login(account, tokens)
    except JobError as exc:
        output.fail(exc.code, exc.message, exc.hint + "; nothing was saved")


def _public(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if key not in SECRET_KEYS}


@group.command("status")
def status(
    check: bool = typer.Option(False, "--check", help="Also log in to both servers."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (no secrets)."),
) -> None:
    """The connected mailbox (no secrets shown). Exit 1 when none is.

    Example:

      mtor email status --check
    """
    from mtor_cli import paths, settings
    from worker.mail import AccountError, MailAccount, TokenSource

    values = settings.get("email") or {}
    try:
        account = MailAccount.from_options(values)
    except AccountError as exc:
        if json_out:
            output.print_json({"configured": False})
        output.fail("not_configured", exc.message, exc.hint)
    if check:
        tokens = None
        if account.auth == "oauth2":
            tokens = TokenSource(account.token_url, account.client_id, account.client_secret, account.refresh_token)
        _check(account, tokens)
    info = {
        "configured": True,
        "address": account.address,
        "auth": account.auth,
        "imap": f"{account.imap_host}:{account.imap_port} ({account.imap_security})",
        "smtp": f"{account.smtp_host}:{account.smtp_port} ({account.smtp_security})",
        "checked": check,
        "config": str(paths.config_file()),
    }
    if json_out:
        output.print_json(info)
        return
    for key in ("address", "auth", "imap", "smtp", "config"):
        print(f"{key}: {info[key]}")
    if check:
        output.note("both servers accepted the login")


@group.command("logout")
def logout() -> None:
    """Forget the mailbox settings (for Gmail, also remove mtor at myaccount.google.com/permissions).

    Example:

      mtor email logout
    """
    from mtor_cli import settings

    if settings.unset("email"):
        output.note("the email settings are removed")
    else:
        output.note("no email account was set up")

"""Sending one message over SMTP (SSL, STARTTLS or plain), by password or XOAUTH2.

Blocking (smtplib) with the account's timeout; the backend runs it in a
thread. Failures are :class:`~worker.backends.base.JobError`s with the same
codes as reading: ``login_failed``, ``upstream_unavailable``, and
``bad_params`` for an address the server refuses.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

from worker.backends.base import JobError

from .account import MailAccount
from .imap import oauth_token, refused_login, unavailable
from .oauth import TokenSource, xoauth2


def compose(account: MailAccount, to_name: str, to_address: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = formataddr((account.name, account.address)) if account.name else account.address
    message["To"] = formataddr((to_name, to_address)) if to_name else to_address
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=account.domain)
    message.set_content(body)
    return message


def _connect(account: MailAccount) -> smtplib.SMTP:
    host, port = account.smtp_host, account.smtp_port
    try:
        if account.smtp_security == "ssl":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=account.timeout_s, context=ssl.create_default_context()
            )
        else:
            conn = smtplib.SMTP(host, port, timeout=account.timeout_s)
            if account.smtp_security == "starttls":
                conn.starttls(context=ssl.create_default_context())
        conn.ehlo()
    except (OSError, smtplib.SMTPException) as exc:
        raise unavailable(account, host, port, exc) from None
    return conn


def _login(conn: smtplib.SMTP, account: MailAccount, token: str) -> None:
    if account.auth == "oauth2":
        response = xoauth2(account.login, token)
        # After a refusal the server sends a JSON challenge; the answer is empty.
        conn.auth("XOAUTH2", lambda challenge=None: response if challenge is None else "")
    else:
        conn.login(account.login, account.password)


def _session(account: MailAccount, tokens: TokenSource | None) -> smtplib.SMTP:
    """A logged-in SMTP connection; a refused OAuth token is renewed once, as for IMAP."""
    attempts = 2 if account.auth == "oauth2" else 1
    for attempt in range(1, attempts + 1):
        token = oauth_token(account, tokens) if account.auth == "oauth2" else ""
        conn = _connect(account)
        try:
            _login(conn, account, token)
            return conn
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError) as exc:
            _quit(conn)
            if tokens is not None:
                tokens.forget()
            if attempt == attempts:
                detail = getattr(exc, "smtp_error", exc)
                text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
                raise refused_login(account, "SMTP", text) from None
        except (OSError, smtplib.SMTPException) as exc:
            _quit(conn)
            raise unavailable(account, account.smtp_host, account.smtp_port, exc) from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


def send(account: MailAccount, message: EmailMessage, tokens: TokenSource | None = None) -> None:
    """Deliver ``message`` to the account's SMTP server."""
    conn = _session(account, tokens)
    try:
        conn.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(exc.recipients)
        raise JobError("bad_params", f"the mail server refused the address {refused}", "check the address") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise unavailable(account, account.smtp_host, account.smtp_port, exc) from None
    finally:
        _quit(conn)


def check_login(account: MailAccount, tokens: TokenSource | None = None) -> None:
    """Log in to the SMTP server and leave: JobError when it refuses or cannot be reached."""
    _quit(_session(account, tokens))

"""Real mail servers for tests, on 127.0.0.1: Dovecot (IMAP) and aiosmtpd (SMTP).

:class:`Dovecot` runs Debian's dovecot with a config written into a private
temp dir: plain logins from a passwd file, XOAUTH2 checked against an OAuth
introspection URL when one is given, a Sent folder, and delivery through
``dovecot-lda``. Dovecot will not run its mail processes as root, so under
root the whole server runs as ``nobody``; otherwise as the current user. It
is stopped by its master's PID.

:class:`SmtpServer` is aiosmtpd on a free port: PLAIN/LOGIN against the same
users, XOAUTH2 through a token check, and every accepted message delivered
into the recipients' Dovecot inboxes, so a sent mail can be read back over
IMAP.
"""

from __future__ import annotations

import base64
import grp
import imaplib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from tests.support.realm import free_port

DOVECOT = "/usr/sbin/dovecot"
LDA = "/usr/lib/dovecot/dovecot-lda"


def _run_as() -> tuple[str, str, int, int]:
    """The (user, group, uid, gid) the mail server runs as: nobody under root."""
    entry = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name, entry.pw_uid, entry.pw_gid


class Dovecot:
    def __init__(self, users: dict[str, str], *, introspection_url: str | None = None) -> None:
        self.users = dict(users)
        self.introspection_url = introspection_url
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mtor-dovecot-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.user, self.group, self.uid, self.gid = _run_as()

    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log(self) -> Path:
        return self.root / "dovecot.log"

    def _write_config(self) -> None:
        root = self.root
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir()
        (root / "users").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        mechanisms = "plain login"
        oauth = ""
        if self.introspection_url:
            mechanisms += " xoauth2 oauthbearer"
            (root / "oauth2.conf.ext").write_text(
                f"introspection_mode = post\nintrospection_url = {self.introspection_url}\n"
                "username_attribute = email\nactive_attribute = active\nactive_value = true\n"
            )
            oauth = f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {root}/oauth2.conf.ext\n}}\n"
        self.config.write_text(
            f"""base_dir = {root}/run
state_dir = {root}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
default_login_user = {self.user}
default_internal_user = {self.user}
default_internal_group = {self.group}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
}}
passdb {{
  driver = passwd-file
  args = {root}/users
}}
{oauth}userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""
        )
        if os.geteuid() == 0:
            for path in [root, *root.rglob("*")]:
                os.chown(path, self.uid, self.gid)

    def _as_mail_user(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []} if os.geteuid() == 0 else {}

    def start(self, timeout: float = 20.0) -> Dovecot:
        self._write_config()
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self._as_mail_user(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self.proc.returncode}: {self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not listen on {self.port} within {timeout:g}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text().splitlines()[-5:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def deliver(self, recipient: str, sender: str, raw: bytes) -> None:
        """Deliver one message into ``recipient``'s inbox, as the MTA would (dovecot-lda)."""
        done = subprocess.run(
            [LDA, "-c", str(self.config), "-d", recipient, "-f", sender],
            input=raw,
            capture_output=True,
            timeout=30,
            **self._as_mail_user(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"dovecot-lda failed ({done.returncode}): {done.stderr.decode(errors='replace')}")

    def imap(self, user: str) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(user, self.users[user])
        return conn

    def append(self, user: str, message: EmailMessage, *, seen: bool = False, folder: str = "INBOX") -> None:
        """Put ``message`` straight into a folder, with its Date as the arrival time."""
        conn = self.imap(user)
        try:
            when = datetime.fromisoformat(message["X-Test-Date"]) if message["X-Test-Date"] else datetime.now()
            del message["X-Test-Date"]
            flags = "(\\Seen)" if seen else None
            typ, data = conn.append(folder, flags, imaplib.Time2Internaldate(when.timestamp()), message.as_bytes())
            assert typ == "OK", data
        finally:
            conn.logout()

    def messages(self, user: str, folder: str = "INBOX") -> list[tuple[EmailMessage, bytes]]:
        """Every message in a folder, with its flags, without marking anything read."""
        from email import message_from_bytes, policy

        conn = self.imap(user)
        try:
            conn.select(folder, readonly=True)
            _typ, data = conn.search(None, "ALL")
            found: list[tuple[EmailMessage, bytes]] = []
            for number in data[0].split():
                _typ, parts = conn.fetch(number, "(FLAGS BODY.PEEK[])")
                meta, raw = parts[0]
                message = message_from_bytes(raw, policy=policy.default)
                assert isinstance(message, EmailMessage)
                found.append((message, meta))
            return found
        finally:
            conn.logout()


def message(sender: str, to: str, subject: str, body: str, when: datetime | None = None) -> EmailMessage:
    """A message as a mail client writes it (``when``: its Date and arrival time)."""
    when = when or datetime.now().astimezone()
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(domain="example.test")
    msg["X-Test-Date"] = when.isoformat()
    msg.set_content(body)
    return msg


class SmtpServer:
    """aiosmtpd with authentication, delivering into Dovecot (``received`` keeps the envelopes)."""

    def __init__(self, dovecot: Dovecot, token_user: Callable[[str], str | None] | None = None) -> None:
        self.dovecot = dovecot
        self.token_user = token_user
        self.port = free_port()
        self.received: list[Any] = []
        self.logins: list[tuple[str, str]] = []  # (mechanism, user)
        self._controller: Any = None

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        server = self

        def authenticator(_smtp: Any, _session: Any, _envelope: Any, mechanism: str, data: Any) -> AuthResult:
            if isinstance(data, LoginPassword):
                user, password = data.login.decode(), data.password.decode()
                if server.dovecot.users.get(user) == password:
                    server.logins.append((mechanism, user))
                    return AuthResult(success=True, auth_data=user)
            return AuthResult(success=False, handled=False)

        class Handler:
            async def handle_RCPT(self, _smtp: Any, _session: Any, envelope: Any, address: str, _opts: Any) -> str:
                if address not in server.dovecot.users:
                    return "550 5.1.1 No such user here"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, _smtp: Any, _session: Any, envelope: Any) -> str:
                import asyncio

                for rcpt in envelope.rcpt_tos:
                    await asyncio.to_thread(server.dovecot.deliver, rcpt, envelope.mail_from, envelope.content)
                server.received.append(envelope)
                return "250 2.0.0 Message accepted for delivery"

            async def auth_XOAUTH2(self, smtp: Any, args: list[str]) -> AuthResult:
                raw = base64.b64decode(args[1]) if len(args) > 1 else b""
                fields = dict(part.split("=", 1) for part in raw.decode().split("\x01") if "=" in part)
                token = fields.get("auth", "").removeprefix("Bearer ")
                user = server.token_user(token) if server.token_user else None
                if user is not None and user == fields.get("user"):
                    server.logins.append(("XOAUTH2", user))
                    return AuthResult(success=True, auth_data=user)
                # Gmail's way: a JSON challenge, the client's empty answer, then 535.
                error = json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"})
                await smtp.challenge_auth(error)
                return AuthResult(success=False)

        self._controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

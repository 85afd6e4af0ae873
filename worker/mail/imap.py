"""Reading a mailbox over IMAP: the latest messages, a search, the recent correspondents.

Blocking (imaplib) with a socket timeout on every connection; the backend
runs it in a thread. Mailboxes are opened read-only and bodies fetched with
``BODY.PEEK``, so reading mail aloud never marks it as read. Every failure is
a :class:`~worker.backends.base.JobError`: ``login_failed`` when the server
refuses the login, ``upstream_unavailable`` when it cannot be reached.
"""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from worker.backends.base import JobError

from .account import MailAccount
from .oauth import OAuthError, TokenSource, xoauth2

SNIPPET_CHARS = 400
FETCH_BYTES = 16384  # enough of a message for its headers and the start of its text
_FETCH_META = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_LIST_LINE = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$')
_TAG = re.compile(r"<[^>]+>")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Mail:
    uid: int
    sender_name: str
    sender: str  # the address
    subject: str
    date: str  # ISO 8601, "" when the message has no readable Date
    unread: bool
    snippet: str
    to: tuple[str, ...] = ()
    message_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["to"] = list(self.to)
        return data


@dataclass(frozen=True)
class Contact:
    name: str
    address: str
    count: int  # messages exchanged among those scanned
    last: str  # ISO date of the latest

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unavailable(account: MailAccount, host: str, port: int, exc: object) -> JobError:
    return JobError(
        "upstream_unavailable",
        f"the mail server {host}:{port} cannot be reached ({exc})",
        "check the network and the server settings (`mtor email status`), then try again",
    )


def refused_login(account: MailAccount, server: str, detail: object) -> JobError:
    if account.auth == "oauth2":
        hint = f"sign in again: mtor email login {account.address}"
    else:
        hint = f"check the app password (your provider's account page makes one), then: mtor email login {account.address}"
    return JobError("login_failed", f"the {server} server refused the login for {account.login}: {detail}", hint)


def oauth_token(account: MailAccount, tokens: TokenSource | None) -> str:
    assert tokens is not None, "an oauth2 account needs a TokenSource"
    try:
        return tokens.access_token()
    except OAuthError as exc:
        if exc.refused:
            raise refused_login(account, "OAuth", exc.message) from None
        raise JobError(
            "upstream_unavailable", f"cannot renew the mail sign-in: {exc.message}", "check the network, then try again"
        ) from None


def _once(response: str) -> Callable[[bytes], bytes]:
    """A SASL responder that answers the first challenge and then nothing, so a
    refusal (a JSON challenge under XOAUTH2) ends in the server's NO."""
    sent = False

    def respond(_challenge: bytes) -> bytes:
        nonlocal sent
        if sent:
            return b""
        sent = True
        return response.encode()

    return respond


class Imap:
    """One logged-in IMAP connection; use as a context manager."""

    def __init__(self, account: MailAccount, tokens: TokenSource | None = None) -> None:
        self.account = account
        self.tokens = tokens
        self.conn: imaplib.IMAP4 | None = None

    def __enter__(self) -> Imap:
        # A cached access token may have been revoked or expired early: on a
        # refusal, try once more with a fresh one (whose refusal is final).
        attempts = 2 if self.account.auth == "oauth2" else 1
        for attempt in range(1, attempts + 1):
            conn = self._connect()
            try:
                self._login(conn)
            except imaplib.IMAP4.error as exc:
                _close(conn)
                if self.tokens is not None:
                    self.tokens.forget()
                if attempt == attempts:
                    raise refused_login(self.account, "IMAP", _text(exc)) from None
                continue
            except OSError as exc:
                _close(conn)
                raise unavailable(self.account, self.account.imap_host, self.account.imap_port, exc) from None
            self.conn = conn
            break
        return self

    def _connect(self) -> imaplib.IMAP4:
        account = self.account
        host, port = account.imap_host, account.imap_port
        try:
            if account.imap_security == "ssl":
                return imaplib.IMAP4_SSL(host, port, ssl_context=ssl.create_default_context(), timeout=account.timeout_s)
            conn = imaplib.IMAP4(host, port, timeout=account.timeout_s)
            if account.imap_security == "starttls":
                conn.starttls(ssl.create_default_context())
            return conn
        except (OSError, imaplib.IMAP4.error) as exc:
            raise unavailable(account, host, port, exc) from None

    def _login(self, conn: imaplib.IMAP4) -> None:
        account = self.account
        if account.auth == "oauth2":
            try:
                token = oauth_token(account, self.tokens)
            except JobError:
                _close(conn)
                raise
            conn.authenticate("XOAUTH2", _once(xoauth2(account.login, token)))
        else:
            conn.login(account.login, account.password)

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            _close(self.conn)
            self.conn = None

    # --- reads ----------------------------------------------------------------

    def latest(self, limit: int, *, unread: bool = False) -> list[Mail]:
        """The newest ``limit`` messages of the inbox, newest first."""
        with self._mailbox("INBOX"):
            return self._fetch(self._search(["UNSEEN"] if unread else ["ALL"])[-limit:])

    def search(self, sender: str | None, since: date | None, before: date | None, limit: int) -> list[Mail]:
        """Inbox messages from ``sender`` (a name or an address) in a date range, newest first."""
        criteria: list[str] = []
        if since is not None:
            criteria += ["SINCE", _imap_date(since)]
        if before is not None:
            criteria += ["BEFORE", _imap_date(before)]
        with self._mailbox("INBOX"):
            if sender and sender.isascii():
                criteria += ["FROM", _quote(sender)]
                return self._fetch(self._search(criteria or ["ALL"])[-limit:])
            found = self._fetch(self._search(criteria or ["ALL"])[-200:])
        wanted = (sender or "").lower()
        return [m for m in found if wanted in m.sender_name.lower() or wanted in m.sender.lower()][:limit]

    def correspondents(self, scan: int = 200) -> list[Contact]:
        """People in the latest ``scan`` messages received and sent, most frequent first."""
        seen: dict[str, list[Any]] = {}  # address -> [name, count, last date]
        own = self.account.address.lower()
        folders = [("INBOX", ("From", "Reply-To"))]
        sent = self._sent_folder()
        if sent is not None:
            folders.append((sent, ("To", "Cc")))
        for folder, headers in folders:
            with self._mailbox(folder):
                uids = self._search(["ALL"])[-scan:]
                for message in self._headers(uids, headers):
                    when = _date_of(message)
                    pairs = getaddresses([str(v) for h in headers for v in (message.get_all(h) or [])])
                    for name, address in pairs:
                        key = address.lower()
                        if "@" not in key or key == own:
                            continue
                        entry = seen.setdefault(key, [name, 0, ""])
                        entry[0] = entry[0] or name
                        entry[1] += 1
                        entry[2] = max(entry[2], when)
        contacts = [Contact(name, address, count, last) for address, (name, count, last) in seen.items()]
        return sorted(contacts, key=lambda c: (c.count, c.last), reverse=True)

    # --- plumbing ---------------------------------------------------------------

    @contextmanager
    def _mailbox(self, name: str) -> Iterator[None]:
        conn = self._conn()
        typ, data = conn.select(_quote(name), readonly=True)
        if typ != "OK":
            raise JobError("upstream_unavailable", f"cannot open the mailbox {name}: {_text(data)}", "")
        try:
            yield
        finally:
            conn.close()

    def _conn(self) -> imaplib.IMAP4:
        assert self.conn is not None, "use Imap as a context manager"
        return self.conn

    def _search(self, criteria: list[str]) -> list[bytes]:
        typ, data = self._conn().uid("SEARCH", *criteria)
        if typ != "OK":
            raise JobError("upstream_unavailable", f"the mail server refused a search: {_text(data)}", "")
        return data[0].split() if data and data[0] else []

    def _fetch(self, uids: list[bytes]) -> list[Mail]:
        if not uids:
            return []
        typ, data = self._conn().uid("FETCH", b",".join(uids).decode(), f"(UID FLAGS BODY.PEEK[]<0.{FETCH_BYTES}>)")
        if typ != "OK":
            raise JobError("upstream_unavailable", f"the mail server refused a fetch: {_text(data)}", "")
        mails = [_mail(meta, raw) for meta, raw in _parts(data)]
        return sorted(mails, key=lambda m: m.uid, reverse=True)

    def _headers(self, uids: list[bytes], headers: tuple[str, ...]) -> list[EmailMessage]:
        if not uids:
            return []
        fields = " ".join(h.upper() for h in (*headers, "Date"))
        typ, data = self._conn().uid("FETCH", b",".join(uids).decode(), f"(BODY.PEEK[HEADER.FIELDS ({fields})])")
        if typ != "OK":
            raise JobError("upstream_unavailable", f"the mail server refused a fetch: {_text(data)}", "")
        return [_parse(raw) for _meta, raw in _parts(data)]

    def _sent_folder(self) -> str | None:
        """The folder flagged ``\\Sent`` (RFC 6154), e.g. Gmail's "[Gmail]/Sent Mail"."""
        typ, data = self._conn().list()
        if typ != "OK":
            return None
        for line in data:
            match = _LIST_LINE.match(line) if isinstance(line, bytes) else None
            if match and b"\\sent" in match.group("flags").lower():
                return match.group("name").decode("utf-8", "replace").strip('"')
        return None


def _parts(data: list[Any]) -> Iterator[tuple[bytes, bytes]]:
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            yield item[0], item[1]


def _parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _mail(meta: bytes, raw: bytes) -> Mail:
    message = _parse(raw)
    uid = _FETCH_META.search(meta)
    flags = _FLAGS.search(meta)
    name, address = parseaddr(str(message.get("From", "")))
    to = tuple(addr for _name, addr in getaddresses([str(v) for v in message.get_all("To") or []]) if addr)
    return Mail(
        uid=int(uid.group(1)) if uid else 0,
        sender_name=name or address,
        sender=address,
        subject=" ".join(str(message.get("Subject", "")).split()) or "(no subject)",
        date=_date_of(message),
        unread=flags is None or b"\\Seen" not in flags.group(1),
        snippet=_snippet(message),
        to=to,
        message_id=str(message.get("Message-ID", "")).strip(),
    )


def _date_of(message: EmailMessage) -> str:
    try:
        return parsedate_to_datetime(str(message["Date"])).isoformat()
    except (TypeError, ValueError, IndexError):
        return ""


def _snippet(message: EmailMessage) -> str:
    """The start of the message's text, on one line (HTML tags dropped)."""
    try:
        body = message.get_body(preferencelist=("plain", "html"))
        text = body.get_content() if body is not None else ""
    except (KeyError, LookupError, ValueError, AttributeError):
        return ""  # cut off mid-part by the partial fetch, or an unknown charset
    if body is not None and body.get_content_subtype() == "html":
        text = _TAG.sub(" ", text)
    return " ".join(str(text).split())[:SNIPPET_CHARS]


def _imap_date(day: date) -> str:
    return f"{day.day:02d}-{_MONTHS[day.month - 1]}-{day.year}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(detail: object) -> str:
    if isinstance(detail, (list, tuple)):
        detail = b" ".join(d for d in detail if isinstance(d, bytes))
    if isinstance(detail, bytes):
        return detail.decode("utf-8", "replace")
    if isinstance(detail, Exception) and detail.args:
        return _text(detail.args[0])
    return str(detail)


def _close(conn: imaplib.IMAP4) -> None:
    try:
        conn.logout()
    except (OSError, imaplib.IMAP4.error):
        pass

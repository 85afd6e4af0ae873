"""The email intent: read, search and send the owner's mail over IMAP and SMTP.

The worker acts on its owner's mailbox, so it serves only its owner
(``owner_only``): the broker hands it no one else's jobs, and routes no one
else's email job to any worker but their own. Options are the account (see
:class:`worker.mail.MailAccount`), which ``mtor`` takes from the ``[email]``
table of the user's config.

Actions, from the words or ``params.action``:

- ``latest``: the newest messages (``limit``, ``unread``);
- ``search``: messages ``from`` someone, ``since`` today / yesterday / week;
- ``contacts``: the recent correspondents;
- ``compose``: resolves who "Bob" is and what the mail is about; it sends
  nothing (the client writes the draft, shows it and asks);
- ``send``: sends ``to``/``subject``/``body`` exactly as given. Only ever
  from params: no words alone make this worker send mail.

``text`` is what to say; ``data`` holds the messages, contacts or draft.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from broker.protocol import Usage, Work, WorkResult
from worker.backends.base import Backend, BadInput, Device, Emitter, JobError
from worker.backends.params import Param, Params
from worker.mail import (
    ACTIONS,
    AccountError,
    Imap,
    MailAccount,
    MailRequest,
    TokenSource,
    compose,
    contact_list,
    date_range,
    mail_list,
    matches,
    parse_request,
    send,
)

MAX_LIMIT = 50
MAX_PROMPT_CHARS = 1000
MAX_SUBJECT_CHARS = 300
MAX_BODY_CHARS = 50_000
SINCE = ("today", "yesterday", "week")


def _text(value: str) -> str | None:
    return value.strip() or None


class EmailBackend(Backend):
    """The owner's mailbox, over IMAP (reading) and SMTP (sending)."""

    intent = "email"
    owner_only = True
    PARAMS = Params(
        "email",
        Param("action", (str,), "what to do (default: read from the words)", pattern="|".join(ACTIONS),
              pattern_means="one of " + ", ".join(ACTIONS), example="e.g. action=latest"),
        Param("from", (str,), "a sender to search for: a name or an address", max_chars=200, convert=_text),
        Param("since", (str,), "today, yesterday, week or a date", pattern=r"today|yesterday|week|\d{4}-\d{2}-\d{2}",
              pattern_means="today, yesterday, week or YYYY-MM-DD", example="e.g. since=today"),
        Param("limit", (int,), "how many messages", low=1, high=MAX_LIMIT, integer_text=True),
        Param("unread", (bool,), "unread messages only"),
        Param("to", (str,), "the recipient: a name to look up (compose) or an address (send)", max_chars=320,
              convert=_text),
        Param("to_name", (str,), "the recipient's name on a sent message", max_chars=200),
        Param("topic", (str,), "what a draft is about", max_chars=MAX_SUBJECT_CHARS, convert=_text),
        Param("subject", (str,), "a sent message's subject", max_chars=MAX_SUBJECT_CHARS, convert=_text),
        Param("body", (str,), "a sent message's text", max_chars=MAX_BODY_CHARS, convert=_text),
    )  # fmt: skip

    def __init__(self, model: str | None, device: Device, **options: Any) -> None:
        super().__init__(model, device, **options)
        self.account: MailAccount | None = None
        self.tokens: TokenSource | None = None
        # One mailbox conversation at a time: providers limit parallel logins.
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        # Not the address: the realm's worker list is visible to others.
        return self.model or "imap-smtp"

    def load(self) -> None:
        try:
            account = MailAccount.from_options(self.options)
        except AccountError as exc:
            raise ValueError(f"{exc.message}; {exc.hint}") from None
        self.account = account
        if account.auth == "oauth2":
            self.tokens = TokenSource(
                account.token_url, account.client_id, account.client_secret, account.refresh_token, account.timeout_s
            )

    def info(self) -> dict[str, Any]:
        return {"actions": list(ACTIONS), "max_limit": MAX_LIMIT}

    # --- what is asked -------------------------------------------------------------

    def _request(self, work: Work) -> tuple[MailRequest, dict[str, Any]]:
        params = self.params.parse(work.params)
        if len(work.prompt) > MAX_PROMPT_CHARS:
            raise BadInput("prompt_too_long", f"the request is {len(work.prompt)} characters", "ask in a sentence")
        if params["since"] not in (None, *SINCE):
            try:
                datetime.strptime(params["since"], "%Y-%m-%d")
            except ValueError:
                raise BadInput("bad_params", f"since={params['since']!r} is not a date", "e.g. since=2025-03-14") from None
        parsed = parse_request(work.prompt)
        action = params["action"] or parsed.action
        who = params["from"] or params["to"] or parsed.who
        topic = params["topic"] or parsed.topic
        if action == "search" and not who:
            raise BadInput("bad_params", "whose mail? the request names no sender", "e.g. 'any mail from Alice today?'")
        if action == "compose" and not (who and topic):
            raise BadInput("bad_params", "a draft needs someone to write to and a topic", "e.g. 'email Bob about lunch'")
        if action == "send":
            self._outgoing(params)
        request = MailRequest(
            action,
            who=who,
            since=params["since"] or parsed.since,
            topic=topic,
            limit=params["limit"] or parsed.limit,
            unread=parsed.unread if params["unread"] is None else params["unread"],
        )
        return request, params

    @staticmethod
    def _outgoing(params: dict[str, Any]) -> tuple[str, str, str]:
        """The address, subject and body of a send: all three, given, or BadInput."""
        missing = [key for key in ("to", "subject", "body") if not params[key]]
        if missing:
            raise BadInput("bad_params", f"send needs {', '.join(missing)}", "send takes a confirmed draft's fields")
        address = parseaddr(params["to"])[1]
        if "@" not in address or " " in address:
            raise BadInput("bad_params", f"to={params['to']!r} is not an email address", "send takes an address")
        return address, params["subject"], params["body"]

    def validate(self, work: Work) -> None:
        self._request(work)

    # --- doing it ---------------------------------------------------------------------

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        request, params = self._request(work)
        started = time.perf_counter()
        text, data = await asyncio.to_thread(self._serve, request, params)
        await out.token(text)
        return WorkResult(
            guid=work.guid,
            text=text,
            model=self.model_name,
            data=data,
            timings={"run_s": time.perf_counter() - started},
            usage=Usage(),
        )

    def _serve(self, request: MailRequest, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        account = self.account
        if account is None:
            raise JobError("not_configured", "the email worker has no account", "run `mtor email login YOU@EXAMPLE.COM`")
        today = datetime.now().astimezone().date()
        with self._lock:
            if request.action == "send":
                address, subject, body = self._outgoing(params)
                to_name = (params["to_name"] or "").strip()
                message = compose(account, to_name, address, subject, body)
                send(account, message, self.tokens)
                to = f"{to_name} <{address}>" if to_name else address
                return f"Sent to {to}: {subject}.", {
                    "action": "send",
                    "to": {"name": to_name, "address": address},
                    "subject": subject,
                    "message_id": str(message["Message-ID"]),
                }
            with Imap(account, self.tokens) as box:
                if request.action == "latest":
                    mails = box.latest(request.limit, unread=request.unread)
                    return mail_list(mails, today, kind="unread" if request.unread else "recent"), {
                        "action": "latest",
                        "messages": [m.to_dict() for m in mails],
                    }
                if request.action == "search":
                    since, before = date_range(request.since, today)
                    mails = box.search(request.who, since, before, request.limit)
                    span = {"today": " today", "yesterday": " yesterday", "week": " this week"}.get(
                        str(request.since), f" since {request.since}" if request.since else ""
                    )
                    return mail_list(mails, today, kind="", tail=f" from {request.who}{span}"), {
                        "action": "search",
                        "from": request.who,
                        "since": request.since,
                        "messages": [m.to_dict() for m in mails],
                    }
                contacts = box.correspondents()
        if request.action == "contacts":
            shown = contacts[: request.limit]
            return contact_list(shown), {"action": "contacts", "contacts": [c.to_dict() for c in shown]}
        return self._draft(request, contacts, account)

    @staticmethod
    def _draft(request: MailRequest, contacts: list[Any], account: MailAccount) -> tuple[str, dict[str, Any]]:
        assert request.who is not None
        found = matches(request.who, contacts)
        if found:
            name, address = found[0].name, found[0].address
        elif "@" in request.who:
            name, address = "", parseaddr(request.who)[1]
        else:
            raise JobError(
                "not_found",
                f"no recent correspondent is called {request.who!r}",
                f"use the address instead: 'email {request.who.split()[0].lower()}@example.com about ...'",
            )
        to = f"{name} <{address}>" if name else address
        subject = request.topic[:1].upper() + request.topic[1:]
        return f"A draft to {to} about {request.topic}.", {
            "action": "compose",
            "to": {"name": name, "address": address},
            "others": [c.to_dict() for c in found[1:4]],
            "topic": request.topic,
            "subject": subject,
            "from": {"name": account.name, "address": account.address},
        }

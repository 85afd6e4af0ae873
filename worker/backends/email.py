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

from broker.protocol import Capability, Work, WorkResult
from worker.backends.base import Backend, BadInput, Device, Emitter, JobError
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
PARAMS = ("action", "from", "since", "limit", "unread", "to", "to_name", "topic", "subject", "body")


def _text_param(params: dict[str, Any], key: str, limit: int, *, required: bool = False) -> str:
    value = params.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise BadInput("bad_params", f"{key} must be text of 1..{limit} characters", f'e.g. {key}="..."')
    return value.strip()


class EmailBackend(Backend):
    """The owner's mailbox, over IMAP (reading) and SMTP (sending)."""

    intent = "email"
    owner_only = True

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

    def capability(self) -> Capability:
        return Capability(
            intent=self.intent,
            models=[self.model_name],
            params={"actions": list(ACTIONS), "limit": [1, MAX_LIMIT], "since": list(SINCE)},
            owner_only=self.owner_only,
        )

    # --- what is asked -------------------------------------------------------------

    def _request(self, work: Work) -> MailRequest:
        params = work.params
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise BadInput(
                "bad_params", f"unknown email parameter(s): {', '.join(unknown)}", "email accepts " + ", ".join(PARAMS)
            )
        if len(work.prompt) > MAX_PROMPT_CHARS:
            raise BadInput("prompt_too_long", f"the request is {len(work.prompt)} characters", "ask in a sentence")
        parsed = parse_request(work.prompt)
        action = params.get("action", parsed.action)
        if action not in ACTIONS:
            raise BadInput("bad_params", f"action={action!r} is not known", "use one of " + ", ".join(ACTIONS))
        limit = params.get("limit", parsed.limit)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise BadInput("bad_params", f"limit={limit!r} is out of range", f"use 1..{MAX_LIMIT}")
        since = params.get("since", parsed.since)
        if since is not None and since not in SINCE:
            try:
                datetime.strptime(str(since), "%Y-%m-%d")
            except ValueError:
                raise BadInput("bad_params", f"since={since!r} is not known", "use today, yesterday, week or YYYY-MM-DD") from None
        unread = params.get("unread", parsed.unread)
        if not isinstance(unread, bool):
            raise BadInput("bad_params", "unread must be true or false", "e.g. --param unread=true")
        who = _text_param(params, "from", 200) or _text_param(params, "to", 320) or parsed.who
        topic = _text_param(params, "topic", MAX_SUBJECT_CHARS) or parsed.topic
        if action == "search" and not who:
            raise BadInput("bad_params", "whose mail? the request names no sender", "e.g. 'any mail from Alice today?'")
        if action == "compose" and not (who and topic):
            raise BadInput("bad_params", "a draft needs someone to write to and a topic", "e.g. 'email Bob about lunch'")
        if action == "send":
            _address, _subject, _body = self._outgoing(params)
        return MailRequest(action, who=who, since=since, topic=topic, limit=limit, unread=unread)

    @staticmethod
    def _outgoing(params: dict[str, Any]) -> tuple[str, str, str]:
        to = _text_param(params, "to", 320, required=True)
        address = parseaddr(to)[1]
        if "@" not in address or " " in address:
            raise BadInput("bad_params", f"to={to!r} is not an email address", "send takes the address the draft resolved")
        return (
            address,
            _text_param(params, "subject", MAX_SUBJECT_CHARS, required=True),
            _text_param(params, "body", MAX_BODY_CHARS, required=True),
        )

    def validate(self, work: Work) -> None:
        self._request(work)

    # --- doing it ---------------------------------------------------------------------

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        request = self._request(work)
        started = time.perf_counter()
        text, data = await asyncio.to_thread(self._serve, request, work.params)
        await out.token(text)
        count = len(data.get("messages", [])) + (1 if request.action == "send" else 0)
        return WorkResult(
            guid=work.guid,
            text=text,
            model=self.model_name,
            data=data,
            timings={"run_s": time.perf_counter() - started},
            usage={"messages": count},
        )

    def _serve(self, request: MailRequest, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        account = self.account
        if account is None:
            raise JobError("not_configured", "the email worker has no account", "run `mtor email login YOU@EXAMPLE.COM`")
        today = datetime.now().astimezone().date()
        with self._lock:
            if request.action == "send":
                address, subject, body = self._outgoing(params)
                to_name = _text_param(params, "to_name", 200)
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

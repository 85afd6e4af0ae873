"""Email, on the person's side: summaries and drafts by the chat intent, and the confirmation.

The email worker reads mail and sends exactly what it is given; this side
turns its answers into what a person wants:

- latest / search: a short summary written by the chat intent when the realm
  serves chat on this machine (else the worker's list of subjects and
  senders stands);
- compose: a draft body written by the chat intent (a plain one without
  chat), shown (and spoken with ``--speak``), sent only after the person
  confirms (``--yes`` for scripts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .session import Declined, Session, VoiceReply

if TYPE_CHECKING:
    from broker.protocol import Result

SUMMARY_SYSTEM = (
    "You read a person's email to them. In two to four short sentences, say who wrote and what about, "
    "and whether anything seems to need an answer. Use only the emails given; never invent anything."
)
DRAFT_SYSTEM = (
    "You write short, friendly emails. Write only the body: a greeting, two to four sentences about the "
    "topic, and a sign-off with the sender's name. No subject line, no notes."
)
CHAT_PARAMS = {"max_tokens": 200, "temperature": 0.0}
SEND_HINT = "pass --yes to send it without asking"


@dataclass(frozen=True)
class Draft:
    to_name: str
    to_address: str
    subject: str
    body: str
    written_by: str  # "chat" or "template"

    @property
    def recipient(self) -> str:
        return f"{self.to_name} <{self.to_address}>" if self.to_name else self.to_address

    def render(self) -> str:
        return f"To: {self.recipient}\nSubject: {self.subject}\n\n{self.body.strip()}\n"


def _listing(messages: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"- From {m['sender_name']} <{m['sender']}>, {m['date'] or 'undated'}: {m['subject']}. {m['snippet'][:300]}"
        for m in messages
    )


def summarise(session: Session, messages: list[dict[str, Any]]) -> str | None:
    """The chat intent's summary of ``messages``, or None without chat (or when it fails).

    Mail text goes only to a chat worker on this machine (the embedded realm),
    unless the person allows any realm's (``mtor config set email.summaries always``):
    elsewhere the chat worker may be a stranger's."""
    if not messages or "chat" not in session.served:
        return None
    if not session.local and _summaries_setting() != "always":
        session.notes.append(
            "not summarised: this realm's chat workers may be other people's "
            "(allow it with `mtor config set email.summaries always`)"
        )
        return None
    from mtor_cli.client import RealmError

    try:
        result = session.ask(_listing(messages), "chat", {**CHAT_PARAMS, "system": SUMMARY_SYSTEM})
    except RealmError as exc:
        session.notes.append(f"no summary: {exc.message}")
        return None
    return (result.text or "").strip() or None


def _summaries_setting() -> str:
    from mtor_cli.paths import load_config

    table = load_config().get("email")
    return str(table.get("summaries", "local")) if isinstance(table, dict) else "local"


def _first_name(name: str, address: str) -> str:
    return name.split()[0] if name.strip() else address.split("@", 1)[0]


def write_draft(session: Session, data: dict[str, Any]) -> Draft:
    """The draft for a ``compose`` answer: the chat intent's words, or a plain template."""
    to, sender = data["to"], data.get("from") or {}
    signature = sender.get("name") or sender.get("address", "").split("@", 1)[0]
    topic, subject = str(data["topic"]), str(data["subject"])
    if "chat" in session.served:
        from mtor_cli.client import RealmError

        prompt = f"Write an email from {signature} to {to['name'] or to['address']} about: {topic}."
        try:
            result = session.ask(prompt, "chat", {**CHAT_PARAMS, "system": DRAFT_SYSTEM}, stream=False)
            body = (result.text or "").strip()
            if body:
                return Draft(to["name"], to["address"], subject, body, "chat")
        except RealmError as exc:
            session.notes.append(f"the chat intent could not write the draft: {exc.message}")
    body = f"Hi {_first_name(to['name'], to['address'])},\n\n{subject}.\n\nBest,\n{signature}"
    return Draft(to["name"], to["address"], subject, body, "template")


def send_draft(session: Session, draft: Draft) -> Result:
    params = {"action": "send", "to": draft.to_address, "to_name": draft.to_name, "subject": draft.subject,
              "body": draft.body}  # fmt: skip
    return session.ask("", "email", params, stream=False)


def finish(session: Session, result: Result) -> Result:
    """What ``mtor ask`` shows and returns after the email worker's answer."""
    import msgspec

    data = dict(result.data)
    action = data.get("action")
    if action in ("latest", "search"):
        summary = summarise(session, data.get("messages", []))
        if summary is None:
            return result
        session.show("")  # the list came first; the summary after a blank line
        return msgspec.structs.replace(result, text=summary, data={**data, "summary": summary})
    if action != "compose":
        return result
    draft = write_draft(session, data)
    session.show("\n" + draft.render())
    if session.speak is not None:
        session.speak(f"Here is the draft to {draft.to_name or draft.to_address}. {draft.body}")
    data["draft"] = asdict(draft)
    try:
        session.confirm(f"Send this email to {draft.recipient}?", SEND_HINT)
    except Declined as exc:
        raise Declined(f"{exc.message}; the email was not sent", exc.hint, {**data, "sent": False}) from None
    sent = send_draft(session, draft)
    session.show(sent.text or "")
    return msgspec.structs.replace(
        sent, data={**data, "sent": True, "message_id": sent.data.get("message_id")}, text=sent.text
    )


def voice_reply(session: Session, result: Result) -> VoiceReply:
    """For ``mtor listen``: what to say, and for a draft the sending, once the person says yes."""
    data = dict(result.data)
    if data.get("action") in ("latest", "search"):
        return VoiceReply(summarise(session, data.get("messages", [])) or (result.text or ""))
    if data.get("action") != "compose":
        return VoiceReply(result.text or "")
    draft = write_draft(session, data)
    said = f"Here is the draft to {draft.to_name or draft.to_address}: {draft.body} Shall I send it?"
    return VoiceReply(said, lambda: send_draft(session, draft), "Not sent.")

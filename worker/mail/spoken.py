"""Mail as a person would read it out: who, when, what about."""

from __future__ import annotations

from datetime import date, datetime

from .imap import Contact, Mail

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip


def when(iso: str, today: date) -> str:
    """ "today at 09:14", "yesterday at 18:02", "on 3 March"."""
    if not iso:
        return "at an unknown time"
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    day = moment.date()
    if day == today:
        return f"today at {moment:%H:%M}"
    if (today - day).days == 1:
        return f"yesterday at {moment:%H:%M}"
    return f"on {day.day} {_MONTHS[day.month - 1]}" + (f" {day.year}" if day.year != today.year else "")


def mail_list(mails: list[Mail], today: date, *, kind: str = "recent", tail: str = "") -> str:
    """The subjects and senders, newest first, numbered: "2 unread emails:", "1 email from Dave today:"."""
    words = f"{kind} " if kind else ""
    if not mails:
        return f"No {words}emails{tail}."
    lines = [f"{len(mails)} {words}email{'s' if len(mails) != 1 else ''}{tail}:"]
    for n, mail in enumerate(mails, 1):
        unread = " (unread)" if mail.unread else ""
        lines.append(f"{n}. From {mail.sender_name}, {when(mail.date, today)}: {mail.subject}{unread}.")
    return "\n".join(lines)


def contact_list(contacts: list[Contact]) -> str:
    if not contacts:
        return "No recent correspondents."
    return "Recent correspondents: " + "; ".join(
        f"{c.name} <{c.address}>" if c.name else c.address for c in contacts
    ) + "."

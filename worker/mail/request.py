"""What an email request asks for, from its words.

"read my latest emails" -> latest; "any mail from Alice today?" -> search
(from Alice, since today); "email Bob about Friday's meeting" -> compose (to
Bob, about Friday's meeting); "who emailed me recently" -> contacts. A
request that names nothing more specific reads the latest mail. Sending is
never read from words: it takes the confirmed draft's fields as params.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

ACTIONS = ("latest", "search", "contacts", "compose", "send")
DEFAULT_LIMIT = 5
_MAIL = r"(?:e-?mails?|mails?|messages?|notes?|lines?)"
_ABOUT = r"(?:about|regarding|re:?|concerning|saying|to\s+say|that|telling\s+(?:him|her|them)|asking)"
_POLITE = r"^(?:(?:please|kindly)\s+|(?:can|could|would)\s+you\s+(?:please\s+)?)?"
_COMPOSE = (
    # "send an email to Bob about ...", "write a message to Alice saying ..."
    re.compile(
        rf"{_POLITE}(?:send|write|draft|compose|drop)\s+(?:an?\s+)?(?:quick\s+|short\s+)?{_MAIL}\s+to\s+"
        rf"(?P<to>.+?)\s+{_ABOUT}\s+(?P<topic>.+)$",
        re.IGNORECASE | re.DOTALL,
    ),
    # "send Bob an email about ...", "write Carol a note saying ..."
    re.compile(
        rf"{_POLITE}(?:send|write|drop)\s+(?P<to>.+?)\s+an?\s+(?:quick\s+|short\s+)?{_MAIL}\s+{_ABOUT}\s+(?P<topic>.+)$",
        re.IGNORECASE | re.DOTALL,
    ),
    # "email Bob about ...", "write to Carol saying ...", "mail the team re the launch"
    re.compile(
        rf"{_POLITE}(?:e-?mail|mail|write\s+to|reply\s+to)\s+(?P<to>.+?)\s+{_ABOUT}\s+(?P<topic>.+)$",
        re.IGNORECASE | re.DOTALL,
    ),
    # "tell Bob by email that ..."
    re.compile(
        rf"{_POLITE}(?:tell|ask|remind)\s+(?P<to>.+?)\s+(?:by|via|in\s+an?)\s+e-?mail\s+(?:that\s+|to\s+|about\s+)?"
        r"(?P<topic>.+)$",
        re.IGNORECASE | re.DOTALL,
    ),
)
_FROM = re.compile(
    rf"\b{_MAIL}\s+(?:from|by)\s+(?P<who>.+)$|\b(?:from|by)\s+(?P<who2>.+?)\s+(?:in\s+my\s+inbox)?$",
    re.IGNORECASE,
)
_HAS_WRITTEN = re.compile(
    r"^(?:has|have|did)\s+(?P<who>.+?)\s+(?:e-?mail(?:ed)?|writ(?:e|ten)|sen[dt]|repl(?:y|ied)|mail(?:ed)?)\b",
    re.IGNORECASE,
)
_CONTACTS = re.compile(
    r"\b(?:who\s+(?:has\s+|have\s+)?(?:e-?mailed|written\s+to|wrote\s+to|mailed)\s+me"
    r"|(?:my\s+)?(?:e-?mail\s+)?contacts|correspondents|who\s+do\s+i\s+(?:e-?mail|write\s+to))\b",
    re.IGNORECASE,
)
_WHEN = re.compile(
    r"\b(?P<when>today|this\s+morning|this\s+afternoon|tonight|yesterday|this\s+week|the\s+last\s+week|recently|lately)\b",
    re.IGNORECASE,
)
_UNREAD = re.compile(r"\b(?:unread|new)\b", re.IGNORECASE)
_COUNT = re.compile(r"\b(?:last|latest|newest|recent|top|first)\s+(?P<n>\d{1,2}|two|three|four|five|ten)\b", re.I)
_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "ten": 10}
_TRAILING = re.compile(r"(?:[\s,;:.!?]+|\s+(?:please|today|to\s+me|me|at\s+all|yet|lately|recently))+$", re.I)


@dataclass(frozen=True)
class MailRequest:
    action: str
    who: str | None = None  # a sender to search for, or the recipient of a draft
    since: str | None = None  # today, yesterday, week
    topic: str = ""  # what a draft is about
    limit: int = DEFAULT_LIMIT
    unread: bool = False


def parse_request(text: str) -> MailRequest:
    """The action and its details; ``latest`` when nothing more specific is asked."""
    text = " ".join(text.split())
    for pattern in _COMPOSE:
        match = pattern.match(text)
        if match:
            topic = _TRAILING.sub("", match.group("topic").strip()).strip()
            return MailRequest("compose", who=_who(match.group("to")), topic=topic)
    when = _WHEN.search(text)
    since = _since_label(when.group("when")) if when else None
    rest = (text[: when.start()] + text[when.end() :]).strip() if when else text
    count = _COUNT.search(rest)
    limit = DEFAULT_LIMIT
    if count is not None:
        raw = count.group("n").lower()
        limit = int(raw) if raw.isdigit() else _WORDS[raw]
    if _CONTACTS.search(rest):
        return MailRequest("contacts", since=since, limit=max(limit, 10))
    found = _HAS_WRITTEN.match(rest) or _FROM.search(rest)
    if found is not None:
        who = _who(found.group("who") or found.groupdict().get("who2") or "")
        if who:
            return MailRequest("search", who=who, since=since, limit=limit)
    return MailRequest("latest", since=since, limit=limit, unread=bool(_UNREAD.search(rest)))


def _who(text: str) -> str | None:
    who = _TRAILING.sub("", text.strip()).strip(" ,'\"")
    who = re.sub(r"^(?:my\s+|the\s+)", "", who, flags=re.IGNORECASE)
    return who or None


def _since_label(when: str) -> str | None:
    when = when.lower()
    if when in ("today", "this morning", "this afternoon", "tonight"):
        return "today"
    if when == "yesterday":
        return "yesterday"
    if when in ("this week", "the last week"):
        return "week"
    return None  # "recently": the latest, whenever they came


def date_range(since: str | None, today: date) -> tuple[date | None, date | None]:
    """The IMAP SINCE/BEFORE days for a label: today, yesterday, week or YYYY-MM-DD."""
    if since is None:
        return None, None
    if since == "today":
        return today, None
    if since == "yesterday":
        return today - timedelta(days=1), today
    if since == "week":
        return today - timedelta(days=7), None
    return date.fromisoformat(since), None

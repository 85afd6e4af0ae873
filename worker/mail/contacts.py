"""Who "Bob" is: a name matched against the mailbox's recent correspondents."""

from __future__ import annotations

import re

from .imap import Contact

_SPLIT = re.compile(r"[\s._+-]+")


def _score(who: str, contact: Contact) -> int:
    """3: the whole name; 2: every word starts a word of the name, in order; 1: the address's user part."""
    name = contact.name.lower()
    if name and who == name:
        return 3
    words, name_words = who.split(), name.split()
    position = 0
    for word in words:
        while position < len(name_words) and not name_words[position].startswith(word):
            position += 1
        if position == len(name_words):
            break
        position += 1
    else:
        if name_words:
            return 2
    local = contact.address.split("@", 1)[0].lower()
    if local == who.replace(" ", "") or who in _SPLIT.split(local):
        return 1
    return 0


def matches(who: str, contacts: list[Contact]) -> list[Contact]:
    """The correspondents ``who`` may mean, best first (then most written to, then latest)."""
    who = " ".join(who.lower().split())
    if "@" in who:
        return [c for c in contacts if c.address.lower() == who]
    scored = [(_score(who, c), c) for c in contacts]
    ranked = sorted((pair for pair in scored if pair[0] > 0), key=lambda p: (p[0], p[1].count, p[1].last), reverse=True)
    return [contact for _score_, contact in ranked]

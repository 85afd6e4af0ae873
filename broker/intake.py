"""Checks on a `submit_query` that need no worker: intent, prompt, attachments."""

from __future__ import annotations

import binascii
from collections.abc import Callable

import msgspec

from broker.config import BrokerConfig
from broker.intents import INTENTS, route
from broker.protocol import ATTACHMENT_KINDS, MtorError, SubmitQuery

MAX_GUID_CHARS = 128


class Rejected(MtorError):
    """A request the broker refuses; ``code`` is one of protocol.ERROR_CODES."""


def check_guid(guid: str) -> None:
    if not guid or len(guid) > MAX_GUID_CHARS:
        raise Rejected(
            "invalid_message",
            f"guid must be 1..{MAX_GUID_CHARS} characters",
            "use a fresh UUID per request",
        )


def normalise(query: SubmitQuery) -> SubmitQuery:
    """Resolve the intent (the router's rules, then attachments, then "chat"),
    strip the wake word from the prompt when the broker chose the intent, and
    apply the asker's settings for that intent."""
    if query.intent is None:
        kinds = tuple(a.kind for a in query.attachments)
        routed = route(query.prompt, kinds)
        query = msgspec.structs.replace(query, intent=routed.intent or "chat", prompt=routed.prompt)
    return with_settings(query)


def with_settings(query: SubmitQuery) -> SubmitQuery:
    """The asker's settings for the query's intent become params (the request's
    own params win); the other intents' settings are dropped here, so no worker
    and no journal sees them (weather gets the home location, chat never does)."""
    if not query.settings:
        return query
    own = query.settings.get(query.intent or "chat", {})
    return msgspec.structs.replace(query, params={**own, **query.params}, settings={})


def check_limits(query: SubmitQuery, config: BrokerConfig, served: Callable[[], set[str]]) -> None:
    """``served()``: the intents some worker of the realm serves (asked only for an intent not built in)."""
    intent = query.intent or "chat"
    if intent not in INTENTS and intent not in (served_intents := served()):
        known = sorted(set(INTENTS) | served_intents)
        raise Rejected(
            "unknown_intent", f"unknown intent {intent!r}", "known intents: " + ", ".join(known)
        )
    if len(query.prompt) > config.max_prompt_chars:
        raise Rejected(
            "prompt_too_long",
            f"the prompt has {len(query.prompt)} characters; this realm accepts {config.max_prompt_chars}",
            "shorten the prompt or split it into several requests",
            limit=config.max_prompt_chars,
        )
    if query.max_price is not None and query.max_price < 0:
        raise Rejected("bad_params", "max_price must be >= 0", "give max_price in base units")
    total = 0
    for i, att in enumerate(query.attachments):
        if att.kind not in ATTACHMENT_KINDS:
            raise Rejected(
                "bad_attachment",
                f"attachment {i} has kind {att.kind!r}",
                "kinds: " + ", ".join(ATTACHMENT_KINDS),
            )
        try:
            total += len(binascii.a2b_base64(att.data, strict_mode=True))
        except (binascii.Error, ValueError):
            raise Rejected(
                "bad_attachment", f"attachment {i} is not valid base64", "base64-encode the file"
            ) from None
        if total > config.max_attachment_bytes:
            raise Rejected(
                "bad_attachment",
                f"attachments exceed {config.max_attachment_bytes} bytes",
                "send a smaller file",
                limit=config.max_attachment_bytes,
            )

"""What mtor does on the person's side around an intent that acts.

Each module here serves one intent and may define:

- ``prepare(params, config) -> params``: settings from the person's config
  that ride along with a request for the intent (weather: the home location);
  :func:`settings` gathers them for a query whose intent the realm chooses;
- ``finish(session, result) -> Result``: follow-up work on the answer in
  ``mtor ask`` (email: a summary, a draft to confirm and send);
- ``voice_reply(session, result) -> VoiceReply``: the same for ``mtor
  listen``, where a yes or no comes as the next utterance.

Intents without a module here need nothing of the kind.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .session import Declined, Session, VoiceReply, is_embedded, served_intents

MODULES = {"weather": "mtor_cli.actions.weather", "email": "mtor_cli.actions.email"}


def for_intent(intent: str) -> ModuleType | None:
    name = MODULES.get(intent)
    return importlib.import_module(name) if name else None


def settings() -> dict[str, dict[str, Any]]:
    """The person's settings for every intent that takes some, by intent, as a
    query carries them: the realm applies those of the intent it chooses."""
    from mtor_cli.paths import load_config

    config = load_config()
    found: dict[str, dict[str, Any]] = {}
    for intent in MODULES:
        prepare = getattr(for_intent(intent), "prepare", None)
        own = prepare({}, config) if prepare is not None else {}
        if own:
            found[intent] = dict(own)
    return found


__all__ = [
    "MODULES",
    "Declined",
    "Session",
    "VoiceReply",
    "for_intent",
    "is_embedded",
    "served_intents",
    "settings",
]

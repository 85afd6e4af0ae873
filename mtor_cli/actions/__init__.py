"""What mtor does on the person's side around an intent that acts.

Each module here serves one intent and may define:

- ``prepare(params, config) -> params``: settings from the person's config
  that ride along with the request (weather: the home location);
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


def prepare(intent: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the person's settings for ``intent`` added."""
    module = for_intent(intent)
    if module is None or not hasattr(module, "prepare"):
        return params
    from mtor_cli.paths import load_config

    return dict(module.prepare(params, load_config()))


__all__ = [
    "MODULES",
    "Declined",
    "Session",
    "VoiceReply",
    "for_intent",
    "is_embedded",
    "prepare",
    "served_intents",
]

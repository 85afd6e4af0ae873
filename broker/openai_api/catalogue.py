"""The realm as one model server: which models its connected workers offer, and for what.

A model is whatever name a worker registered for an intent; the same name
may be served for several intents (a vision model answers chat with images).
Everything is read live from the worker registry, so a worker that connects
is listed at once and one that leaves is gone at the next request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.registry import WorkerEntry

# Intents that take or give media rather than text: chat completions never
# route to them by accident (a text-to-text plugin intent, e.g. "echo", may serve chat).
MEDIA_INTENTS = frozenset({"vision", "imagine", "speech", "tts", "embed"})


@dataclass
class Offer:
    """One model as the realm offers it now."""

    model: str
    params: dict[str, set[str]] = field(default_factory=dict)  # intent -> parameter names its backends declare
    workers: int = 0
    since: float = 0.0  # when the longest-connected worker serving it registered (unix time)


def offers(workers: Iterable[WorkerEntry], only: str | None = None) -> dict[str, Offer]:
    """Every model some connected worker serves (or just ``only``), by name."""
    found: dict[str, Offer] = {}
    for worker in workers:
        counted: set[str] = set()
        for cap in worker.capabilities:
            for model in cap.models:
                if only is not None and model != only:
                    continue
                offer = found.get(model)
                if offer is None:
                    offer = found[model] = Offer(model, since=worker.connected_at)
                offer.since = min(offer.since, worker.connected_at)
                names = offer.params.setdefault(cap.intent, set())
                names.update(cap.params.get("properties", {}))
                if model not in counted:
                    counted.add(model)
                    offer.workers += 1
    return found


def declared(workers: Iterable[WorkerEntry], intent: str, model: str | None) -> set[str] | None:
    """The parameter names that ``intent``'s backends (serving ``model``, if given) declare;
    None if no connected worker serves it."""
    names: set[str] | None = None
    for worker in workers:
        if not worker.serves(intent, model):
            continue
        for cap in worker.capabilities:
            if cap.intent == intent:
                names = (names or set()) | set(cap.params.get("properties", {}))
    return names


def text_intent(offer: Offer) -> str | None:
    """The intent a text-only chat request for this model goes to: chat, else a
    text-to-text intent the model serves, else None."""
    if "chat" in offer.params:
        return "chat"
    return next((i for i in sorted(offer.params) if i not in MEDIA_INTENTS), None)

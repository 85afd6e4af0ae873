"""Which intent a request without one goes to, and why: the realm's routing.

Rules first (``broker.intents.route``: the wake word, explicit verbs,
attachments); then, where the realm serves more than chat, a recogniser
(anything with ``recognise(text, attachment_kinds)``, e.g. the embedding
recogniser of ``mtor_cli.intent``), else chat. Last, a request whose intent
no connected worker serves goes to chat when chat can answer it in words
(:func:`broker.intents.chat_can_answer`), with a note saying so.

The :class:`Routing` says all of it, so that ``mtor ask --explain`` prints
what actually happened, not what recognition alone would have chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from broker.intents import chat_can_answer, route, strip_wake_word

CHAT = "chat"


class Recognised(Protocol):
    intent: str
    prompt: str
    source: str
    score: float
    prototype: str | None


class Recognises(Protocol):
    def recognise(self, text: str, attachment_kinds: Sequence[str] = ()) -> Recognised: ...


@dataclass(frozen=True)
class Routing:
    intent: str  # where the request goes
    prompt: str  # what the model sees (wake word and verb removed where a rule knows them)
    source: str  # what decided: "rule:imagine:verb", "prototype:vision", "only-chat", "fallback:chat", "--intent"
    score: float = 1.0  # 1 for a rule; the nearest prototype's similarity for the embedding stage
    prototype: str | None = None
    recognised: str | None = None  # the intent recognition chose, when the request went elsewhere
    note: str = ""  # for the person, e.g. why chat answers a "say ..." request

    @property
    def fell_back(self) -> bool:
        return self.recognised is not None and self.recognised != self.intent

    def explain(self) -> str:
        """One line for ``--explain``."""
        if self.source == "--intent":
            return f"{self.intent} <- --intent"
        if self.source == "only-chat":
            return f"{self.intent} <- the realm serves only chat, so nothing else was considered"
        chosen = self.recognised or self.intent
        why = f"{chosen} <- {self.source}"
        why += f" (nearest prototype {self.prototype!r}, score {self.score:.2f})" if self.prototype else f" (score {self.score:.2f})"
        if self.fell_back:
            return f"{self.intent} <- no worker serves {chosen} in this realm; recognised: {why}"
        return why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    text: str,
    attachment_kinds: tuple[str, ...] = (),
    served: set[str] | None = None,
    recogniser: Recognises | None = None,
) -> Routing:
    """Route ``text``. ``served``: the intents connected workers serve (None: unknown,
    then nothing falls back); ``recogniser``: the embedding stage, if the realm has one."""
    routed = route(text, attachment_kinds)
    if routed.intent is not None:
        routing = Routing(routed.intent, routed.prompt, routed.rule)
    elif served is not None and not served - {CHAT}:
        return Routing(CHAT, routed.prompt, "only-chat")
    elif recogniser is None:
        routing = Routing(CHAT, routed.prompt, f"fallback:{CHAT}", 0.0)
    else:
        rec = recogniser.recognise(text, attachment_kinds)
        routing = Routing(rec.intent, rec.prompt, rec.source, rec.score, rec.prototype)
    if (
        served is not None
        and routing.intent not in served
        and CHAT in served
        and chat_can_answer(routing.intent, routing.source, attachment_kinds)
    ):
        return Routing(
            CHAT,
            strip_wake_word(text)[0],  # all of it: "say hello" is said to chat, not "hello"
            routing.source,
            routing.score,
            routing.prototype,
            recognised=routing.intent,
            note=f"no worker serves {routing.intent} in this realm, so chat answers instead",
        )
    return routing

"""Which intent a request without one goes to, and why: the realm's routing.

It runs in the broker (:class:`Router`), which keeps the recogniser loaded, so
a client sends text and learns the routing from ``accepted.routing``.

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

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import msgspec

from broker import protocol as p
from broker.intents import chat_can_answer, route, strip_wake_word

log = logging.getLogger("mtor.broker.routing")

CHAT = "chat"


class Recognised(Protocol):
    @property
    def intent(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def prototype(self) -> str | None: ...


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

    def wire(self) -> p.Routing:
        """As ``accepted.routing`` carries it."""
        return p.Routing(self.source, self.score, self.prototype, self.recognised, self.note)

    @classmethod
    def from_wire(cls, intent: str, routing: p.Routing) -> Routing:
        return cls(intent, "", routing.source, routing.score, routing.prototype, routing.recognised, routing.note)


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
    elif served and not served - {CHAT}:
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


class Router:
    """The broker's routing: rules on the event loop, the recogniser (if any) on a
    thread of its own, loaded once and kept (``warm`` loads it at start)."""

    def __init__(
        self,
        served: Callable[[], set[str]],
        stored: Callable[[str], p.SubmitQuery | None],
        recogniser: Recognises | None = None,
    ) -> None:
        """``served()``: the intents connected workers serve; ``stored(guid)``: the
        query the broker already holds under that guid (queued, running or finished)."""
        self._served = served
        self._stored = stored
        self.recogniser = recogniser
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mtor-recognise") if recogniser else None

    async def warm(self) -> None:
        """Load the recogniser's model now rather than on the first query that needs it."""
        warm = getattr(self.recogniser, "warm", None)
        if self._pool is None or warm is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, warm)
        except Exception:  # queries still route, by the rules and chat
            log.exception("the intent recogniser could not load; routing by rules only")
            self.recogniser = None

    async def resolve(self, query: p.SubmitQuery) -> tuple[p.SubmitQuery, Routing | None]:
        """``query`` with its intent chosen, and why (None when the client named it)."""
        if query.intent is not None:
            return query, None
        known = self._stored(query.guid)
        if known is not None:  # a resubmission (a reconnect): it goes where it went
            return msgspec.structs.replace(query, intent=known.intent, prompt=known.prompt), None
        kinds = tuple(a.kind for a in query.attachments)
        served = self._served()
        recogniser = self.recogniser
        routing = None
        if self._pool is not None and recogniser is not None and _needs_model(query.prompt, kinds, served):
            loop = asyncio.get_running_loop()
            try:
                routing = await loop.run_in_executor(self._pool, decide, query.prompt, kinds, served, recogniser)
            except Exception:  # the query still goes somewhere: by the rules, else chat
                log.exception("the intent recogniser failed; routing by rules only from now on")
                self.recogniser = None
        if routing is None:
            routing = decide(query.prompt, kinds, served, None)
        return msgspec.structs.replace(query, intent=routing.intent, prompt=routing.prompt), routing

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _needs_model(text: str, kinds: tuple[str, ...], served: set[str]) -> bool:
    """The embedding stage matters only where no rule decides and more than chat is served."""
    return route(text, kinds).intent is None and bool(served - {CHAT})

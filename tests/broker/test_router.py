"""Routing in the broker: a query that names no intent is routed by the realm, which
keeps its recogniser loaded, and `accepted.routing` tells the client why."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from broker.protocol import Accepted, Result
from broker.routing import Routing
from tests.support.peers import FakeWorker, TestClient


class Counting:
    """A recogniser that places every request on one intent, noting where it ran."""

    def __init__(self, intent: str) -> None:
        self.intent = intent
        self.threads: list[str] = []
        self.warmed = threading.Event()

    def warm(self) -> None:
        self.warmed.set()

    def recognise(self, text: str, attachment_kinds: Sequence[str] = ()) -> Routing:
        self.threads.append(threading.current_thread().name)
        return Routing(self.intent, text, f"prototype:{self.intent}", 0.61, "what do you see")


async def test_say_hello_in_a_chat_only_realm_is_answered_by_chat(broker) -> None:
    worker = await FakeWorker(broker.url, intents=("chat",)).start()
    try:
        async with TestClient(broker.url) as client:
            guid = await client.submit("Computer, say hello", intent=None)
            events = await client.collect(guid)
        accepted = next(e for e in events if isinstance(e, Accepted))
        result = next(e for e in events if isinstance(e, Result))
        assert accepted.intent == result.intent == "chat"
        assert accepted.routing is not None
        assert (accepted.routing.source, accepted.routing.recognised) == ("rule:tts:verb", "tts")
        assert accepted.routing.note == "no worker serves tts in this realm, so chat answers instead"
        assert worker.received[0].prompt == "say hello"  # the whole request, without the wake word
    finally:
        await worker.close()


async def test_the_recogniser_runs_in_the_broker_on_its_own_thread(make_broker) -> None:
    recogniser = Counting("vision")
    broker = await make_broker(recogniser=recogniser)
    workers = [await FakeWorker(broker.url, intents=(i,)).start() for i in ("chat", "vision")]
    try:
        assert recogniser.warmed.wait(5)  # loaded at start, not on the first query
        async with TestClient(broker.url) as client:
            guid = await client.submit("tell me about otters", intent=None)
            events = await client.collect(guid)
            accepted = next(e for e in events if isinstance(e, Accepted))
            assert accepted.intent == "vision" and accepted.routing is not None
            assert accepted.routing.source == "prototype:vision" and accepted.routing.prototype == "what do you see"
            assert recogniser.threads == ["mtor-recognise_0"]  # never on the event loop
            # A rule decides without the model; a named intent is not routed at all.
            ruled = await client.collect(await client.submit("what is in this picture?", intent=None))
            named = await client.collect(await client.submit("tell me about otters", intent="chat"))
        assert len(recogniser.threads) == 1
        assert next(e for e in ruled if isinstance(e, Accepted)).routing.source == "rule:vision:question"  # type: ignore[union-attr]
        assert next(e for e in named if isinstance(e, Accepted)).routing is None
    finally:
        for worker in workers:
            await worker.close()


async def test_a_resubmitted_guid_goes_where_it_went(broker) -> None:
    """After a reconnect the client sends the same query again; the workers may have
    changed meanwhile, but the guid keeps its routing (no duplicate_guid)."""
    chat = await FakeWorker(broker.url, intents=("chat",)).start()
    try:
        async with TestClient(broker.url) as client:
            guid = await client.submit("say hello", intent=None)
            first = [e for e in await client.collect(guid) if isinstance(e, Result)]
        tts = await FakeWorker(broker.url, intents=("tts",)).start()  # now tts is served too
        try:
            async with TestClient(broker.url, client.account) as again:
                await again.submit("say hello", guid=guid, intent=None)
                replay = [e for e in await again.collect(guid) if isinstance(e, Result)]
            assert replay[0].replayed and replay[0].intent == first[0].intent == "chat"
        finally:
            await tts.close()
    finally:
        await chat.close()

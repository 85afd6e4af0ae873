"""Per-user limits: requests per minute and live intents, with retry_after."""

from __future__ import annotations

from broker.protocol import Accepted, Error, Result
from tests.support.peers import FakeWorker, TestClient, echo, hang


async def test_requests_per_minute_are_limited_per_user(make_broker) -> None:
    server = await make_broker(rate_per_minute=3)
    await FakeWorker(server.url, slots=4, behaviour=echo()).start()
    async with TestClient(server.url) as heavy, TestClient(server.url) as other:
        for i in range(3):
            assert isinstance(await heavy.ask(f"hi {i}", intent="chat"), Result)
        guid = await heavy.submit("one too many", intent="chat")
        limited = await heavy.next_for(guid)
        assert isinstance(limited, Error) and limited.code == "rate_limited"
        assert 0 < limited.retry_after <= 60 and limited.detail["limit"] == 3
        assert "retry in" in limited.hint
        # Someone else is not affected, and the limited connection still works.
        assert isinstance(await other.ask("me too", intent="chat"), Result)
        await heavy.send({"type": "ping", "nonce": "n"})
        assert (await heavy.next_other()).__class__.__name__ == "Pong"


async def test_concurrent_intents_are_limited_and_a_resubmitted_guid_is_not(make_broker) -> None:
    server = await make_broker(max_concurrent=2)
    await FakeWorker(server.url, slots=4, behaviour=hang()).start()
    async with TestClient(server.url) as client:
        first = [await client.submit(f"job {i}", intent="chat") for i in range(2)]
        for g in first:
            assert isinstance(await client.next_for(g), Accepted)
        third = await client.submit("third", intent="chat")
        limited = await client.next_for(third)
        assert isinstance(limited, Error) and limited.code == "rate_limited" and limited.retry_after > 0
        again = await client.submit("job 0", guid=first[0], intent="chat")
        assert isinstance(await client.next_for(again), Accepted)
        await client.send({"type": "cancel", "guid": first[1]})
        assert (await client.next_for(first[1])).code == "cancelled"
        fourth = await client.submit("fourth", intent="chat")
        assert isinstance(await client.next_for(fourth), Accepted)

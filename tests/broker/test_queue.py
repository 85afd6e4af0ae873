"""SafeQueue behaviour seen from clients: fairness, bounds, credits, routing."""

from __future__ import annotations

import asyncio

from broker.protocol import Accepted, Error, Result
from tests.support.peers import FakeWorker, TestClient, echo, hang


async def test_one_user_flooding_does_not_starve_another(broker) -> None:
    worker = await FakeWorker(broker.url, slots=1, behaviour=echo(delay_s=0.002)).start()
    async with TestClient(broker.url) as flood, TestClient(broker.url) as polite:
        flood_guids = [await flood.submit(f"flood {i}", intent="chat") for i in range(50)]
        for guid in flood_guids:  # all 50 are queued before the other user arrives
            assert isinstance(await flood.next_for(guid), Accepted)
        polite_guids = [await polite.submit(f"polite {i}", intent="chat") for i in range(3)]
        for guid in polite_guids:
            msgs = await polite.collect(guid)
            assert isinstance(msgs[-1], Result)
        done_when_polite_finished = sum(1 for w in worker.received if w.prompt.startswith("flood"))
        for guid in flood_guids:
            assert isinstance((await flood.collect(guid))[-1], Result)
    await worker.close()
    # Round robin: each of the polite user's 3 intents waits for at most one flood intent.
    assert done_when_polite_finished <= 1 + 3 + 1, done_when_polite_finished
    order = [w.prompt.split()[0] for w in worker.received]
    assert order.count("polite") == 3 and len(order) == 53


async def test_queue_full_is_immediate(make_broker) -> None:
    server = await make_broker(queue_limit=3)
    worker = await FakeWorker(server.url, slots=1, behaviour=hang()).start()
    async with TestClient(server.url) as client:
        guids = [await client.submit(f"job {i}", intent="chat") for i in range(4)]
        accepted = [await client.next_for(g) for g in guids]
        assert all(isinstance(a, Accepted) for a in accepted)
        assert [a.position for a in accepted[1:]] == [0, 1, 2]
        over = await client.submit("one too many", intent="chat")
        err = await client.next_for(over, timeout=1)
        assert isinstance(err, Error) and err.code == "queue_full" and err.detail["limit"] == 3
    await worker.close()


async def test_dispatch_never_exceeds_free_slots(broker) -> None:
    small = await FakeWorker(broker.url, slots=1, behaviour=echo(delay_s=0.01), name="small").start()
    big = await FakeWorker(broker.url, slots=3, behaviour=echo(delay_s=0.01), name="big").start()
    async with TestClient(broker.url) as client:
        guids = [await client.submit("a b c", intent="chat") for _ in range(24)]
        for guid in guids:
            assert isinstance((await client.collect(guid))[-1], Result)
    assert small.max_running == 1
    assert big.max_running == 3
    assert len(small.received) + len(big.received) == 24
    # Least-loaded first: the 3-slot worker takes about three times the work.
    assert len(big.received) > len(small.received)
    await small.close()
    await big.close()


async def test_intent_is_routed_when_the_client_names_none(broker) -> None:
    artist = await FakeWorker(broker.url, intents=("imagine",), behaviour=echo()).start()
    talker = await FakeWorker(broker.url, intents=("chat",), behaviour=echo()).start()
    async with TestClient(broker.url) as client:
        imagined = await client.ask("Computer, imagine a neon mountain")
        chatted = await client.ask("Computer, tell me a joke")
    assert imagined.intent == "imagine" and imagined.text == "a neon mountain"
    assert artist.received[0].prompt == "a neon mountain"
    assert chatted.intent == "chat" and talker.received[0].prompt == "tell me a joke"
    await artist.close()
    await talker.close()


async def test_a_queued_intent_no_worker_takes_fails_after_the_wait_limit(make_broker) -> None:
    server = await make_broker(max_queue_wait_s=0.3, heartbeat_s=0.1)
    worker = await FakeWorker(server.url, slots=1, behaviour=hang()).start()
    async with TestClient(server.url) as client:
        await client.submit("busy", intent="chat")
        waiting = await client.submit("waiting", intent="chat")
        msgs = await client.collect(waiting, timeout=5)
    err = msgs[-1]
    assert isinstance(err, Error) and err.code == "timeout" and "no worker took" in err.message
    await worker.close()


async def test_one_user_cannot_fill_a_queue_and_lock_others_out(make_broker) -> None:
    server = await make_broker(queue_limit=10, user_queue_limit=4)
    worker = await FakeWorker(server.url, slots=1, behaviour=hang()).start()
    async with TestClient(server.url) as greedy, TestClient(server.url) as other:
        running = await greedy.submit("running", intent="chat")
        assert isinstance(await greedy.next_for(running), Accepted)
        await worker.got_work.wait()
        queued = [await greedy.submit(f"job {i}", intent="chat") for i in range(4)]
        assert all(isinstance(a, Accepted) for a in [await greedy.next_for(g) for g in queued])
        over = await greedy.submit("one too many", intent="chat")
        err = await greedy.next_for(over, timeout=2)
        assert isinstance(err, Error) and err.code == "queue_full"
        assert err.detail == {"limit": 4, "scope": "user"} and "you have 4 intents waiting" in err.message
        # Everyone else still gets in, up to the realm's limit for the queue.
        mine = [await other.submit(f"mine {i}", intent="chat") for i in range(4)]
        assert all(isinstance(a, Accepted) for a in [await other.next_for(g) for g in mine])
    await worker.close()


async def test_the_realm_limit_says_it_is_everyones(make_broker) -> None:
    server = await make_broker(queue_limit=2, user_queue_limit=2)
    worker = await FakeWorker(server.url, slots=1, behaviour=hang()).start()
    async with TestClient(server.url) as a, TestClient(server.url) as b:
        first = await a.submit("running", intent="chat")
        await a.next_for(first)
        await worker.got_work.wait()
        await a.next_for(await a.submit("q1", intent="chat"))
        await b.next_for(await b.submit("q2", intent="chat"))
        err = await b.ask("full", intent="chat")
        assert isinstance(err, Error) and err.code == "queue_full" and err.detail == {"limit": 2, "scope": "realm"}
        assert "all users" in err.message
    await worker.close()


async def test_a_worker_serving_two_intents_gets_no_more_of_one_than_it_says(broker) -> None:
    from broker.protocol import Capability, Register, sign_challenge

    worker = FakeWorker(broker.url, behaviour=hang(), slots=9)
    await worker.open()
    challenge = await worker.next_other()
    await worker.send(
        Register(
            address=worker.account.address, signature=sign_challenge(worker.account.key, challenge.nonce, "worker"),
            nonce=challenge.nonce, slots=9,
            capabilities=[Capability(intent="chat", slots=8), Capability(intent="imagine", slots=1)],
        )
    )
    await worker.next_other()  # welcome
    async with TestClient(broker.url) as client:
        drawings = [await client.submit(f"a cat {i}", intent="imagine") for i in range(3)]
        chats = [await client.submit(f"hi {i}", intent="chat") for i in range(3)]
        for guid in drawings + chats:
            assert isinstance(await client.next_for(guid), Accepted)
        await asyncio.sleep(0.3)
    got = [w.intent for w in worker.received]
    assert got.count("imagine") == 1 and got.count("chat") == 3
    await worker.close()

"""Durability: idempotent resubmits, and a broker restart with intents in flight."""

from __future__ import annotations

import asyncio
import sqlite3

from broker.protocol import Accepted, Error, Result
from tests.broker.conftest import get_json
from tests.support.peers import FakeWorker, TestClient, echo, hang, new_account


async def test_resubmitting_a_guid_returns_the_stored_result_without_a_second_run(broker) -> None:
    worker = await FakeWorker(broker.url, behaviour=echo()).start()
    account = new_account()
    async with TestClient(broker.url, account) as client:
        guid = await client.submit("only once", intent="chat")
        first = (await client.collect(guid))[-1]
    # A new connection of the same user (a client that reconnected).
    async with TestClient(broker.url, account) as again:
        await again.submit("only once", guid=guid, intent="chat")
        replay = (await again.collect(guid))[-1]
    assert isinstance(first, Result) and isinstance(replay, Result)
    assert replay.replayed is True and first.replayed is False
    assert (replay.text, replay.worker, replay.cost) == (first.text, first.worker, first.cost)
    assert [w.guid for w in worker.received] == [guid]
    await worker.close()


async def test_a_finished_intent_is_replayed_even_with_no_worker_left(broker) -> None:
    worker = await FakeWorker(broker.url, behaviour=echo()).start()
    account = new_account()
    async with TestClient(broker.url, account) as client:
        guid = await client.submit("keep this", intent="chat")
        assert isinstance((await client.collect(guid))[-1], Result)
    await worker.close()
    for _ in range(100):
        if len(broker.parts.registry) == 0:
            break
        await asyncio.sleep(0.01)
    async with TestClient(broker.url, account) as client:
        await client.submit("keep this", guid=guid, intent="chat")
        replay = await client.next_for(guid)
        fresh = await client.ask("and this?", intent="chat")
    assert isinstance(replay, Result) and replay.replayed and replay.text == "keep this"
    assert isinstance(fresh, Error) and fresh.code == "no_worker"


async def test_a_guid_of_another_user_or_request_is_a_duplicate(broker) -> None:
    worker = await FakeWorker(broker.url, behaviour=echo()).start()
    async with TestClient(broker.url) as owner, TestClient(broker.url) as stranger:
        guid = await owner.submit("mine", intent="chat")
        await owner.collect(guid)
        await stranger.submit("mine", guid=guid, intent="chat")
        err = await stranger.next_for(guid)
        assert isinstance(err, Error) and err.code == "duplicate_guid" and "another user" in err.message
        await owner.submit("something else", guid=guid, intent="chat")
        err = await owner.next_for(guid)
        assert isinstance(err, Error) and err.code == "duplicate_guid" and "different request" in err.message
    assert len(worker.received) == 1
    await worker.close()


async def test_resubmitting_a_running_guid_reattaches_without_a_second_run(broker) -> None:
    worker = await FakeWorker(broker.url, behaviour=hang()).start()
    account = new_account()
    first = TestClient(broker.url, account)
    await first.connect()
    guid = await first.submit("patience", intent="chat")
    await asyncio.wait_for(worker.got_work.wait(), 5)
    await first.close()
    async with TestClient(broker.url, account) as second:
        await second.submit("patience", guid=guid, intent="chat")
        assert isinstance(await second.next_for(guid), Accepted)
        await echo()(worker, worker.received[0])  # the worker finishes the original run
        result = (await second.collect(guid))[-1]
    assert isinstance(result, Result) and result.text == "patience" and not result.replayed
    assert len(worker.received) == 1
    await worker.close()


async def test_intent_is_journaled_before_accepted(broker, db_path) -> None:
    worker = await FakeWorker(broker.url, behaviour=hang()).start()
    async with TestClient(broker.url) as client:
        guid = await client.submit("write me down", intent="chat")
        assert isinstance(await client.next_for(guid), Accepted)
        # Another connection to the file sees the committed row the moment `accepted` arrives.
        with sqlite3.connect(db_path) as db:
            row = db.execute("SELECT state, user FROM intents WHERE guid = ?", (guid,)).fetchone()
        assert row == ("queued", client.address)
    await worker.close()


async def test_restart_with_queued_and_running_intents_completes_all(make_broker) -> None:
    first = await make_broker()
    stuck = await FakeWorker(first.url, slots=1, behaviour=hang()).start()
    account = new_account()
    async with TestClient(first.url, account) as client:
        guids = [await client.submit(f"survivor {i}", intent="chat") for i in range(4)]
        for guid in guids:
            assert isinstance(await client.next_for(guid), Accepted)
        await asyncio.wait_for(stuck.got_work.wait(), 5)  # one running, three queued
    await first.stop()
    await stuck.close()

    second = await make_broker()  # same journal file
    assert second.restored == 4
    worker = await FakeWorker(second.url, slots=2, behaviour=echo()).start()
    for _ in range(200):
        if (await get_json(second, "/v1/stats"))["intents"]["completed"] == 4:
            break
        await asyncio.sleep(0.02)
    assert sorted(w.guid for w in worker.received) == sorted(guids)
    async with TestClient(second.url, account) as client:
        for i, guid in enumerate(guids):
            await client.submit(f"survivor {i}", guid=guid, intent="chat")
            result = (await client.collect(guid))[-1]
            assert isinstance(result, Result) and result.text == f"survivor {i}" and result.replayed
    assert len(worker.received) == 4
    await worker.close()

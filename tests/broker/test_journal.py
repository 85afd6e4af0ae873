"""The intent journal, in SQLite and in PostgreSQL: one suite, run against both.

Durability seen from clients (idempotent resubmits, a broker restart with
intents in flight), then the Journal interface itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker import BrokerConfig
from broker.journal import CANCELLED, DONE, QUEUED, IntentRecord, Journal
from broker.protocol import Accepted, Error, Result, Unavailable
from broker.stores import open_stores
from tests.broker.conftest import STORES, both_stores, get_json
from tests.support.peers import FakeWorker, TestClient, echo, hang, new_account

store = pytest.fixture(params=STORES)(both_stores)


def stored_row(store: dict[str, Any], guid: str) -> tuple[Any, ...] | None:
    """(state, user) of ``guid`` as another connection to the store sees it."""
    if "db_url" in store:
        import psycopg

        with psycopg.connect(store["db_url"]) as db:
            return db.execute('SELECT state, "user" FROM intents WHERE guid = %s', (guid,)).fetchone()
    with sqlite3.connect(store["db_path"]) as db:
        return db.execute("SELECT state, user FROM intents WHERE guid = ?", (guid,)).fetchone()


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


async def test_intent_is_journaled_before_accepted(broker, store) -> None:
    worker = await FakeWorker(broker.url, behaviour=hang()).start()
    async with TestClient(broker.url) as client:
        guid = await client.submit("write me down", intent="chat")
        assert isinstance(await client.next_for(guid), Accepted)
        # Another connection to the store sees the committed row the moment `accepted` arrives.
        assert stored_row(store, guid) == ("queued", client.address)
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


async def test_a_result_is_stored_before_it_is_delivered(broker, store) -> None:
    worker = await FakeWorker(broker.url, behaviour=echo()).start()
    async with TestClient(broker.url) as client:
        result = await client.ask("keep me", intent="chat")
        assert isinstance(result, Result)
        assert stored_row(store, result.guid) == ("done", client.address)
    await worker.close()


# --- the Journal interface ------------------------------------------------------


@pytest.fixture
async def journal(store) -> AsyncIterator[Journal]:
    stores = await open_stores(BrokerConfig(**store), lambda task: None)
    yield stores.journal
    await stores.close()


async def committed(journal: Journal) -> None:
    stored = journal.commit()
    if stored is not None:
        await stored


def record(guid: str, created: float, price: int = 7) -> IntentRecord:
    return IntentRecord(guid, "0xUser", "chat", QUEUED, b'{"guid":"%s"}' % guid.encode(), price, created)


async def test_add_is_the_idempotency_check(journal) -> None:
    assert await journal.add(record("g1", 1.0))
    assert not await journal.add(record("g1", 2.0))
    await committed(journal)
    got = await journal.get("g1")
    assert got == record("g1", 1.0)
    assert await journal.get("nope") is None


async def test_same_guid_twice_at_once_is_new_only_once(journal) -> None:
    firsts = await asyncio.gather(*(journal.add(record("twin", float(i))) for i in range(3)))
    assert sorted(firsts) == [False, False, True]


async def test_amounts_beyond_64_bits_survive(journal) -> None:
    big = 123 * 10**24
    assert await journal.add(record("rich", 1.0, price=big))
    await committed(journal)
    got = await journal.get("rich")
    assert got is not None and got.price_held == big and isinstance(got.price_held, int)


async def test_finish_stores_the_first_outcome_only(journal) -> None:
    await journal.add(record("f", 1.0))
    journal.finish("f", DONE, b'{"type":"result"}')
    await committed(journal)
    journal.finish("f", CANCELLED, b'{"type":"error"}')  # a second broker's late answer
    await committed(journal)
    got = await journal.get("f")
    assert got is not None and (got.state, got.outcome) == (DONE, b'{"type":"result"}')


async def test_unfinished_lists_queued_intents_oldest_first(journal) -> None:
    for guid, created in (("late", 3.0), ("early", 1.0), ("done", 2.0), ("gone", 4.0)):
        await journal.add(record(guid, created))
    journal.finish("done", DONE, b"{}")
    await journal.discard("gone")
    await committed(journal)
    assert [r.guid for r in await journal.unfinished()] == ["early", "late"]
    assert await journal.get("gone") is None


async def test_a_down_postgres_is_unavailable_not_a_crash(pg_database, postgres_server, tmp_path) -> None:
    stores = await open_stores(BrokerConfig(db_path=tmp_path / "unused.db", db_url=pg_database), lambda task: None)
    try:
        postgres_server.stop()
        with pytest.raises(Unavailable) as refused:
            await stores.journal.add(record("while-down", 1.0))
        assert refused.value.code == "unavailable" and refused.value.detail["retry_after"] > 0
    finally:
        postgres_server.start()
        await stores.close()


def test_a_journal_from_before_versioned_schemas_is_migrated_in_place(tmp_path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the schema brokers created before broker/sql existed
        db.execute(
            'CREATE TABLE "intents" ("guid" TEXT PRIMARY KEY, "user" TEXT NOT NULL, "intent" TEXT NOT NULL,'
            ' "state" TEXT NOT NULL, "query" BLOB NOT NULL, "price_held" INTEGER NOT NULL,'
            ' "created" REAL NOT NULL, "finished" REAL, "outcome" BLOB)'
        )
        db.execute("INSERT INTO intents VALUES ('old', '0xU', 'chat', 'done', x'7b7d', 42, 1.0, 2.0, x'7b7d')")

    async def reopen() -> IntentRecord | None:
        stores = await open_stores(BrokerConfig(db_path=path), lambda task: None)
        try:
            assert await stores.journal.add(record("new", 3.0, price=10**30))
            await committed(stores.journal)
            return await stores.journal.get("old")
        finally:
            await stores.close()

    old = asyncio.run(reopen())
    assert old is not None and old.price_held == 42 and old.state == "done"
    with sqlite3.connect(path) as db:
        assert [v for (v,) in db.execute("SELECT version FROM mtor_schema ORDER BY version")] == [1]

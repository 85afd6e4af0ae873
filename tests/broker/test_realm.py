"""A realm of three brokers sharing one Redis and one PostgreSQL (real servers).

Clients and workers are spread over the brokers; a worker on any broker
serves intents submitted on any broker, in the same fair order as one broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from broker import BrokerConfig, BrokerServer
from broker.protocol import Accepted, Broadcast, Error, Result
from tests.broker.conftest import get_json
from tests.support.peers import FakeWorker, TestClient, echo, hang, new_account

Realm = list[BrokerServer]


@pytest.fixture
async def make_realm(redis_server: Any, pg_database: str, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Realm]]]:
    """Start brokers of one realm (its own key prefix in the session's Redis, a fresh database)."""
    started: list[BrokerServer] = []
    name = f"t{uuid.uuid4().hex[:8]}"

    async def make(count: int = 3, **overrides: Any) -> Realm:
        brokers = []
        for _ in range(count):
            settings: dict[str, Any] = {
                "port": 0, "db_path": tmp_path / f"{len(started)}.db", "db_url": pg_database,
                "engine": redis_server.url, "realm": name, "heartbeat_s": 0.2, "stats_interval_s": 0.05,
                "engine_beat_s": 0.1, "engine_dead_s": 1.0,
            }  # fmt: skip
            settings.update(overrides)
            server = BrokerServer(BrokerConfig(**settings))
            await server.start()
            started.append(server)
            brokers.append(server)
        return brokers

    yield make
    for server in reversed(started):
        if server._runner is not None:
            await asyncio.wait_for(server.stop(), 30)


async def realm_sees(brokers: Realm, workers: int, timeout: float = 10.0) -> None:
    """Wait until every broker lists ``workers`` workers (the realm's, not only its own)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = [len((await get_json(b, "/v1/workers"))["workers"]) for b in brokers]
        if all(n == workers for n in seen):
            return
        assert asyncio.get_running_loop().time() < deadline, f"brokers see {seen} workers, not {workers}"
        await asyncio.sleep(0.05)


async def test_every_intent_is_answered_once_wherever_its_client_and_worker_are(make_realm) -> None:
    brokers = await make_realm(3)
    workers = [await FakeWorker(b.url, slots=2, behaviour=echo(delay_s=0.002), name=f"w{i}").start()
               for i, b in enumerate(brokers)]  # fmt: skip
    await realm_sees(brokers, 3)
    clients = [await TestClient(b.url).connect() for b in brokers for _ in range(2)]
    home = {c.address: brokers[i // 2] for i, c in enumerate(clients)}

    async def ask_many(client: TestClient) -> list[Any]:
        guids = [await client.submit(f"ask {i} of {client.address[-4:]}", intent="chat") for i in range(15)]
        return [await client.collect(g, timeout=20) for g in guids]

    answered = await asyncio.gather(*(ask_many(c) for c in clients))
    results = [msgs[-1] for per_client in answered for msgs in per_client]
    assert all(isinstance(r, Result) for r in results), [r for r in results if not isinstance(r, Result)][:3]
    assert all(sum(isinstance(m, Result) for m in msgs) == 1 for per in answered for msgs in per)
    runs = Counter(w.guid for worker in workers for w in worker.received)
    assert len(runs) == 90 and set(runs.values()) == {1}, "every intent ran exactly once"
    by_worker = Counter(r.worker for r in results)
    assert len(by_worker) == 3, f"every broker's worker served: {by_worker}"
    # Results crossed brokers: a worker id names its broker.
    crossed = sum(
        1 for c, per in zip(clients, answered, strict=True) for msgs in per
        if not msgs[-1].worker.startswith(home[c.address].parts.views.describe()["id"])
    )  # fmt: skip
    assert crossed > 0
    for c in clients:
        await c.close()
    for w in workers:
        await w.close()


async def test_a_heavy_user_does_not_starve_a_light_one_on_another_broker(make_realm) -> None:
    """SafeQueue's bound, across brokers: each of the light user's intents waits
    for at most one of the heavy user's (test_queue.py has the one-broker case)."""
    heavy_home, light_home, worker_home = await make_realm(3)
    worker = await FakeWorker(worker_home.url, slots=1, behaviour=echo(delay_s=0.002)).start()
    await realm_sees([heavy_home, light_home, worker_home], 1)
    async with TestClient(heavy_home.url) as flood, TestClient(light_home.url) as polite:
        flood_guids = [await flood.submit(f"flood {i}", intent="chat") for i in range(50)]
        for guid in flood_guids:
            assert isinstance(await flood.next_for(guid), Accepted)
        # Journaling and queueing 50 intents on a realm takes long enough for
        # the worker to serve some of them before the light user arrives: count
        # only what it served meanwhile.
        arrived = len(worker.received)
        polite_guids = [await polite.submit(f"polite {i}", intent="chat") for i in range(3)]
        for guid in polite_guids:
            assert isinstance((await polite.collect(guid, timeout=20))[-1], Result)
        before_polite_done = sum(1 for w in worker.received[arrived:] if w.prompt.startswith("flood"))
        for guid in flood_guids:
            assert isinstance((await flood.collect(guid, timeout=20))[-1], Result)
    await worker.close()
    assert before_polite_done <= 1 + 3 + 1, before_polite_done
    assert [w.prompt.split()[0] for w in worker.received].count("polite") == 3


async def test_an_owner_only_intent_reaches_its_owners_worker_on_another_broker(make_realm) -> None:
    """Email goes only to the asker's own worker (test_owner_only.py), wherever
    in the realm it is connected; a stranger's free email worker never gets it."""
    alices_broker, strangers_broker, askers_broker = await make_realm(3)
    alice, mallory, bob = new_account(), new_account(), new_account()
    alices = await FakeWorker(alices_broker.url, intents=("email",), account=alice, slots=2).start()
    mallorys = await FakeWorker(strangers_broker.url, intents=("email",), account=mallory, slots=4).start()
    await realm_sees([alices_broker, strangers_broker, askers_broker], 2)
    async with TestClient(askers_broker.url, alice) as as_alice, TestClient(askers_broker.url, bob) as as_bob:
        guids = [await as_alice.submit(f"read my mail {i}", intent="email") for i in range(5)]
        served = [(await as_alice.collect(g, timeout=20))[-1] for g in guids]
        assert all(isinstance(r, Result) and r.worker == alices.worker_id for r in served), served
        refused = (await as_bob.collect(await as_bob.submit("read my mail", intent="email")))[-1]
        assert isinstance(refused, Error) and refused.code == "no_worker"
        assert refused.message == "no worker of yours serves intent 'email'"
    assert mallorys.received == []
    assert len(alices.received) == 5
    await alices.close()
    await mallorys.close()


async def test_cancel_reaches_the_broker_whose_worker_runs_it(make_realm) -> None:
    here, there = await make_realm(2)
    worker = await FakeWorker(there.url, behaviour=hang()).start()
    await realm_sees([here, there], 1)
    async with TestClient(here.url) as client:
        guid = await client.submit("stop me", intent="chat")
        assert isinstance(await client.next_for(guid), Accepted)
        await asyncio.wait_for(worker.got_work.wait(), 5)
        await client.send({"type": "cancel", "guid": guid})
        ended = await client.next_for(guid)
    assert isinstance(ended, Error) and ended.code == "cancelled"
    for _ in range(100):
        if worker.cancels:
            break
        await asyncio.sleep(0.02)
    assert worker.cancels == [guid]
    await worker.close()


async def test_a_client_that_moves_to_another_broker_gets_its_running_intent_there(make_realm) -> None:
    first, second, worker_home = await make_realm(3)
    worker = await FakeWorker(worker_home.url, behaviour=hang()).start()
    await realm_sees([first, second, worker_home], 1)
    account = new_account()
    gone = await TestClient(first.url, account).connect()
    guid = await gone.submit("follow me", intent="chat")
    await asyncio.wait_for(worker.got_work.wait(), 5)
    await gone.close()
    async with TestClient(second.url, account) as moved:
        await moved.submit("follow me", guid=guid, intent="chat")
        assert isinstance(await moved.next_for(guid), Accepted)
        await asyncio.sleep(0.2)  # the running broker learns where the client went
        await echo()(worker, worker.received[0])
        msgs = await moved.collect(guid)
    result = msgs[-1]
    assert isinstance(result, Result) and result.text == "follow me" and not result.replayed
    assert [m.text for m in msgs if m.__class__.__name__ == "Token"] == ["follow", " me"]
    assert len(worker.received) == 1
    # And once finished, any broker replays it from the shared journal.
    async with TestClient(first.url, account) as again:
        await again.submit("follow me", guid=guid, intent="chat")
        replay = await again.next_for(guid)
    assert isinstance(replay, Result) and replay.replayed and replay.text == "follow me"
    await worker.close()


async def test_a_result_finished_while_the_client_moved_is_not_lost(make_realm) -> None:
    """The worker answers after the client left its broker and before it
    reconnected: the result is in the journal and the resubmit replays it."""
    first, second = await make_realm(2)
    worker = await FakeWorker(second.url, behaviour=hang()).start()
    await realm_sees([first, second], 1)
    account = new_account()
    gone = await TestClient(first.url, account).connect()
    guid = await gone.submit("while away", intent="chat")
    await asyncio.wait_for(worker.got_work.wait(), 5)
    await gone.close()
    await echo()(worker, worker.received[0])
    await asyncio.sleep(0.2)
    async with TestClient(second.url, account) as back:
        await back.submit("while away", guid=guid, intent="chat")
        replay = (await back.collect(guid))[-1]
    assert isinstance(replay, Result) and replay.text == "while away"
    assert len(worker.received) == 1
    await worker.close()


async def test_the_queue_limit_holds_for_the_realm(make_realm) -> None:
    one, two = await make_realm(2, queue_limit=3)
    worker = await FakeWorker(one.url, slots=1, behaviour=hang()).start()
    await realm_sees([one, two], 1)
    async with TestClient(one.url) as a, TestClient(two.url) as b:
        running = await a.submit("running", intent="chat")
        assert isinstance(await a.next_for(running), Accepted)
        await asyncio.wait_for(worker.got_work.wait(), 5)
        queued = [await (a if i % 2 else b).submit(f"queued {i}", intent="chat") for i in range(3)]
        for i, guid in enumerate(queued):
            assert isinstance(await (a if i % 2 else b).next_for(guid), Accepted)
        over = await b.submit("one too many", intent="chat")
        refused = await b.next_for(over)
    assert isinstance(refused, Error) and refused.code == "queue_full" and refused.detail["limit"] == 3
    await worker.close()


async def test_every_broker_shows_the_realm(make_realm) -> None:
    brokers = await make_realm(3)
    workers = [await FakeWorker(b.url, slots=2, behaviour=echo()).start() for b in brokers[:2]]
    await realm_sees(brokers, 2)
    async with TestClient(brokers[0].url) as c0, TestClient(brokers[2].url) as c2:
        for c in (c0, c2):
            assert isinstance(await c.ask("count me", intent="chat"), Result)
        await asyncio.sleep(0.3)  # a beat or two
        for b in brokers:
            stats = await get_json(b, "/v1/stats")
            assert stats["brokers"] == 3 and stats["workers"] == 2 and stats["slots_total"] == 4
            assert stats["clients"] == 2 and stats["intents"]["completed"] == 2
            listed = await get_json(b, "/v1/brokers")
            assert sorted(r["url"] for r in listed["brokers"]) == sorted(x.url for x in brokers)
            assert [r["this"] for r in listed["brokers"]].count(True) == 1
            health = await get_json(b, "/healthz")
            assert health["workers"] == 2 and health["brokers"] == 3
    for w in workers:
        await w.close()



async def test_a_client_and_a_worker_move_to_another_broker_when_theirs_stops(make_realm) -> None:
    """Given every broker's URL, the SDK client and the worker fail over: the
    client's unfinished intent completes once, the worker keeps serving."""
    from mtor_cli.client import RealmClient
    from worker import Worker, WorkerConfig
    from worker.backends.base import Device
    from worker.backends.echo import EchoBackend

    first, second = await make_realm(2)
    both = f"{first.url},{second.url}"
    worker = Worker(WorkerConfig(broker_url=both, slots=2, reconnect_initial_s=0.05), [EchoBackend(None, Device())],
                    new_account())  # fmt: skip
    serving = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 10)
    assert worker.url.startswith(first.url)
    await realm_sees([first, second], 1)
    async with RealmClient(both, new_account(), reconnect_s=20) as client:
        assert client.url.startswith(first.url)
        slow = asyncio.create_task(client.ask("slow words to finish", intent="echo", params={"delay_s": 0.3}))
        await asyncio.sleep(0.5)  # accepted and running on the worker, through the first broker
        await first.stop()
        result = await asyncio.wait_for(slow, 30)
        assert result.text == "slow words to finish"
        assert client.url.startswith(second.url) and client.reconnects == 1
        assert worker.url.startswith(second.url) and worker.registrations == 2
        again = await client.ask("and after", intent="echo")
        assert again.text == "and after" and again.worker.startswith(second.parts.views.describe()["id"])
    await worker.stop()
    await asyncio.gather(serving, return_exceptions=True)


async def test_a_client_given_a_dead_broker_first_uses_the_next(make_realm) -> None:
    from mtor_cli.client import RealmClient
    from tests.support.realm import free_port

    (alive,) = await make_realm(1)
    worker = await FakeWorker(alive.url, intents=("echo",), behaviour=echo()).start()
    dead = f"ws://127.0.0.1:{free_port()}"
    async with RealmClient(f"{dead},{alive.url}", new_account(), connect_timeout=2) as client:
        assert client.url.startswith(alive.url)
        assert (await client.ask("still here", intent="echo")).text == "still here"
    await worker.close()


# --- sysop actions and limits hold for the realm, whichever broker gets them -----


async def test_a_ban_on_one_broker_cuts_the_user_off_everywhere(make_realm, pg_database) -> None:
    pg_url = pg_database
    from tests.broker.test_accounts import signed

    operator, user = new_account(), new_account()
    here, there, worker_home = await make_realm(3, operator=operator.address)
    worker = await FakeWorker(worker_home.url, behaviour=hang()).start()
    await realm_sees([here, there, worker_home], 1)
    victim = await TestClient(there.url, user).connect()
    guid = await victim.submit("endless", intent="chat")
    assert isinstance(await victim.next_for(guid), Accepted)
    await asyncio.wait_for(worker.got_work.wait(), 5)

    done = await signed(here, "POST", "/v1/sysop/ban", operator, {"address": user.address, "reason": "spam"})
    assert done["intents_ended"] == 1
    await asyncio.wait_for(victim.closed.wait(), 5)
    assert victim.close_code == 4003
    told = await victim.next_other()  # the intent's own error races the broker's notice; this one always comes
    assert isinstance(told, Error) and told.code == "banned"
    for _ in range(100):
        if worker.cancels:
            break
        await asyncio.sleep(0.02)
    assert worker.cancels == [guid]
    import psycopg

    with psycopg.connect(pg_url) as db:
        state, outcome = db.execute("SELECT state, outcome FROM intents WHERE guid = %s", (guid,)).fetchone()
    assert state == "cancelled" and b'"code":"banned"' in bytes(outcome)
    again = TestClient(worker_home.url, user)
    await again.connect(hello=False)
    refused = await again.hello()
    assert isinstance(refused, Error) and refused.code == "banned" and "spam" in refused.message
    await again.close()
    await victim.close()
    await worker.close()


async def test_sysop_grants_pauses_and_broadcasts_across_brokers(make_realm) -> None:
    from tests.broker.test_accounts import signed

    operator, helper = new_account(), new_account()
    one, two = await make_realm(2, operator=operator.address)
    worker = await FakeWorker(two.url, behaviour=echo(), name="far").start()
    await realm_sees([one, two], 1)
    await signed(one, "POST", "/v1/sysop/grant", operator, {"address": helper.address})
    await asyncio.sleep(0.3)  # the other broker reads the grant again
    profile = await signed(two, "GET", "/v1/profile", helper)
    assert profile["sysop"] is True

    # The helper, on broker one, pauses a worker connected to broker two.
    listed = (await signed(one, "GET", "/v1/sysop/workers", helper))["workers"]
    assert [w["id"] for w in listed] == [worker.worker_id]
    await signed(one, "POST", "/v1/sysop/pause", helper, {"id": worker.worker_id})
    async with TestClient(one.url) as client, TestClient(two.url) as listener:
        guid = await client.submit("after the pause", intent="chat")
        assert isinstance(await client.next_for(guid), Accepted)
        await asyncio.sleep(0.4)
        assert worker.received == []
        await signed(two, "POST", "/v1/sysop/resume", helper, {"id": worker.worker_id})
        assert (await client.collect(guid))[-1].text == "after the pause"

        sent = await signed(one, "POST", "/v1/sysop/broadcast", helper, {"message": "maintenance at noon"})
        assert sent["brokers"] == 2
        heard = await listener.next_other()
        assert isinstance(heard, Broadcast) and heard.message == "maintenance at noon"
    audit = (await signed(two, "GET", "/v1/sysop/audit", operator))["audit"]
    assert {"grant", "worker pause", "worker resume", "broadcast"} <= {a["action"] for a in audit}
    await worker.close()


async def test_a_signed_request_is_good_once_in_the_whole_realm(make_realm) -> None:
    import json
    import time

    from broker.protocol import sign_request
    from tests.broker.test_sysop import _raw

    operator = new_account()
    one, two = await make_realm(2, operator=operator.address)
    ts, path = int(time.time()), "/v1/sysop/workers"
    headers = {"X-MTOR-Address": operator.address, "X-MTOR-Timestamp": str(ts), "X-MTOR-Nonce": "once",
               "X-MTOR-Signature": sign_request(operator.key, "GET", path, ts, "once")}  # fmt: skip
    status, _ = await asyncio.to_thread(_raw, one.http_url, path, headers)
    assert status == 200
    status, body = await asyncio.to_thread(_raw, two.http_url, path, headers)
    assert status == 401 and "already used" in json.dumps(body)


async def test_per_user_limits_count_the_users_intents_on_every_broker(make_realm) -> None:
    one, two = await make_realm(2, max_concurrent=2, rate_per_minute=3)
    worker = await FakeWorker(one.url, slots=4, behaviour=hang()).start()
    await realm_sees([one, two], 1)
    user = new_account()
    async with TestClient(one.url, user) as here, TestClient(two.url, user) as there:
        first = await here.submit("job 0", intent="chat")
        second = await there.submit("job 1", intent="chat")
        for client, guid in ((here, first), (there, second)):
            assert isinstance(await client.next_for(guid), Accepted)
        third = await there.submit("job 2", intent="chat")
        limited = await there.next_for(third)
        assert isinstance(limited, Error) and limited.code == "rate_limited" and limited.detail["limit"] == 2
        again = await there.submit("job 0", guid=first, intent="chat")  # a live guid is never limited
        assert isinstance(await there.next_for(again), Accepted)
        await there.send({"type": "cancel", "guid": second})
        assert (await there.next_for(second)).code == "cancelled"
        fourth = await here.submit("job 3", intent="chat")
        assert isinstance(await here.next_for(fourth), Accepted)
        await there.send({"type": "cancel", "guid": first})
        assert (await there.next_for(first)).code == "cancelled"
        fifth = await here.submit("job 4", intent="chat")  # 3 requests counted this minute (refused ones are not)
        limited = await here.next_for(fifth)
        assert isinstance(limited, Error) and limited.code == "rate_limited" and "a minute" in limited.message
    await worker.close()


async def test_a_subscriber_on_one_broker_sees_the_realm(make_realm) -> None:
    """The TUI's live view: events of intents submitted and run on other brokers."""
    from tests.broker.test_subscriptions import drain

    operator = new_account()  # a sysop's view: every user's intents
    watch_home, submit_home, worker_home = await make_realm(3, operator=operator.address)
    worker = await FakeWorker(worker_home.url, behaviour=echo(), slots=4).start()
    await realm_sees([watch_home, submit_home, worker_home], 1)
    async with TestClient(watch_home.url, operator) as tui:
        await tui.send({"type": "subscribe", "topics": ["stats", "intents"]})
        snapshots = [await tui.next_other() for _ in range(2)]
        assert snapshots[0].data["workers"] == 1 and snapshots[0].data["brokers"] == 3
        await asyncio.sleep(0.3)  # the other brokers learn that this one has a subscriber
        async with TestClient(submit_home.url) as user:
            guids = [await user.submit(f"seen {i}", intent="chat") for i in range(5)]
            for guid in guids:
                assert isinstance((await user.collect(guid))[-1], Result)
        pushes = await drain(tui, 1.0)
    events = [e for p in pushes if p.topic == "intents" for e in p.data["events"]]
    states = {(e["guid"], e["state"]) for e in events}
    assert {(g, "queued") for g in guids} <= states and {(g, "done") for g in guids} <= states
    assert any(e["state"] == "running" and e["worker"] == worker.worker_id for e in events)
    assert [p for p in pushes if p.topic == "stats"][-1].data["intents"]["completed"] >= 5
    await worker.close()


async def test_a_broker_loads_its_recogniser_before_it_joins_the_realm(redis_server: Any, pg_database: str,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    """Loading the model starves the event loop for seconds on a busy machine: a
    broker that did it while a member would miss its beats and be reaped."""
    import redis

    realm = f"t{uuid.uuid4().hex[:8]}"
    engine = redis.Redis.from_url(redis_server.url)
    members_while_warming: list[int] = []

    class SlowRecogniser:
        def warm(self) -> None:
            members_while_warming.append(engine.hlen(f"mtor:{realm}:brokers"))

        def recognise(self, text: str, attachment_kinds: Any = ()) -> Any:
            raise AssertionError("not asked in this test")

    config = BrokerConfig(port=0, db_path=tmp_path / "b.db", db_url=pg_database, engine=redis_server.url,
                          realm=realm, engine_beat_s=0.1, engine_dead_s=1.0)  # fmt: skip
    server = BrokerServer(config, recogniser=SlowRecogniser())
    await server.start()
    try:
        assert members_while_warming[:1] == [0]
        for _ in range(50):
            if engine.hlen(f"mtor:{realm}:brokers") == 1:
                break
            await asyncio.sleep(0.05)
        assert engine.hlen(f"mtor:{realm}:brokers") == 1
    finally:
        await server.stop()
        engine.close()


async def test_an_answer_reaches_a_broker_presumed_dead_while_alive(make_realm, redis_server: Any) -> None:
    """A broker whose beats stop (a stalled loop, a cut link) is reaped by the
    others, yet it may be alive with its clients connected: what the realm
    sends it meanwhile waits in its inbox instead of being dropped."""
    import redis

    home, other = await make_realm(2)
    worker = await FakeWorker(other.url, behaviour=echo(delay_s=1.5)).start()
    await realm_sees([home, other], 1)
    shared = home._shared
    assert shared is not None
    engine = redis.Redis.from_url(redis_server.url)
    try:
        async with TestClient(home.url) as client:
            guid = await client.submit("still here", intent="chat")
            assert isinstance(await client.next_for(guid), Accepted)
            await asyncio.wait_for(worker.got_work.wait(), 5)
            beat = shared._tasks[0]  # the home broker stops beating, as if its loop stalled
            beat.cancel()
            prefix = f"mtor:{home.config.realm}:"
            engine.delete(prefix + f"hb:{shared.id}")
            for _ in range(100):  # the other broker reaps it
                if not engine.hexists(prefix + "brokers", shared.id):
                    break
                await asyncio.sleep(0.05)
            assert not engine.hexists(prefix + "brokers", shared.id)
            answer = (await client.collect(guid, timeout=10))[-1]
        assert isinstance(answer, Result) and answer.text == "still here"
    finally:
        engine.close()
        await worker.close()


async def test_a_guid_another_user_holds_is_refused_and_nothing_of_its_run_reaches_anyone(make_realm) -> None:
    """A realm's broker with a free worker starts a new intent while the journal
    writes its row: when the journal refuses the intent (another user's guid),
    that run's tokens and result reach no one and the stored outcome stays."""
    alices_broker, broker = await make_realm(2)
    alices_worker = await FakeWorker(alices_broker.url, slots=1, behaviour=echo()).start()
    worker = await FakeWorker(broker.url, slots=1, behaviour=echo(delay_s=0.01)).start()
    await realm_sees([alices_broker, broker], 2)
    async with TestClient(alices_broker.url) as alice, TestClient(broker.url) as mallory:
        guid = uuid.uuid4().hex
        first = (await alice.collect(await alice.submit("alice asks this", guid=guid, intent="chat")))[-1]
        assert isinstance(first, Result) and first.text == "alice asks this"
        # A connection's first intent never starts early (it may be a resubmission): mallory's next do.
        assert (await mallory.ask("mallory warms up", intent="chat", timeout=10)).text == "mallory warms up"
        for _ in range(3):
            seen = await mallory.collect(await mallory.submit("mallory asks that", guid=guid, intent="chat"))
            assert [type(m) for m in seen] == [Error] and seen[0].code == "duplicate_guid", seen
        # Her broker's worker did start it, before the journal answered; nothing of it was used.
        assert [w.prompt for w in worker.received].count("mallory asks that") >= 1
        again = await alice.collect(await alice.submit("alice asks this", guid=guid, intent="chat"))
        assert [type(m) for m in again] == [Result] and again[0].replayed and again[0].text == "alice asks this"
        # The worker's slot was not kept: the next intent runs at once.
        assert (await mallory.ask("mallory again", intent="chat", timeout=10)).text == "mallory again"
    await worker.close()
    await alices_worker.close()


async def test_a_finished_guid_resubmitted_gets_its_stored_result_once(make_realm) -> None:
    (broker,) = await make_realm(1)
    worker = await FakeWorker(broker.url, slots=2, behaviour=echo()).start()
    await realm_sees([broker], 1)
    async with TestClient(broker.url) as client:
        guid = uuid.uuid4().hex
        first = (await client.collect(await client.submit("once only", guid=guid, intent="chat")))[-1]
        for _ in range(3):
            again = await client.collect(await client.submit("once only", guid=guid, intent="chat"))
            assert [type(m) for m in again] == [Result], again
            assert again[-1].replayed and again[-1].text == first.text and again[-1].worker == first.worker
        assert (await client.ask("and then", intent="chat", timeout=10)).text == "and then"
    assert [w.prompt for w in worker.received].count("once only") == 1
    await worker.close()


async def test_an_intent_started_while_postgres_is_down_is_refused_and_its_run_dropped(
    make_realm, postgres_server: Any
) -> None:
    (broker,) = await make_realm(1)
    worker = await FakeWorker(broker.url, slots=1, behaviour=echo(delay_s=0.2)).start()
    await realm_sees([broker], 1)
    async with TestClient(broker.url) as client:
        assert (await client.ask("warm up", intent="chat")).text == "warm up"
        await asyncio.to_thread(postgres_server.stop)
        try:
            guid = await client.submit("not while it is down", intent="chat")
            seen = await client.collect(guid, timeout=30)
        finally:
            await asyncio.to_thread(postgres_server.start)
        assert [type(m) for m in seen] == [Error] and seen[0].code == "unavailable", seen
        assert "database" in seen[0].message
        # Its worker started it before the journal failed; none of that run reached the client.
        assert [w.prompt for w in worker.received].count("not while it is down") == 1
        again = await client.collect(await client.submit("not while it is down", guid=guid, intent="chat"), 30)
        assert isinstance(again[-1], Result) and again[-1].text == "not while it is down" and not again[-1].replayed
    await worker.close()

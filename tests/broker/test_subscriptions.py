"""`subscribe{topics}`: a snapshot at once, then coalesced pushes on change."""

from __future__ import annotations

import asyncio

from broker.protocol import Error, Result, Stats
from tests.support.peers import FakeWorker, TestClient, echo, new_account


async def drain(client: TestClient, seconds: float) -> list[Stats]:
    got: list[Stats] = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            got.append(await client.next_other(timeout=left))
        except TimeoutError:
            break
    return got


async def test_subscriber_gets_snapshots_then_coalesced_changes(make_broker) -> None:
    operator = new_account()  # a sysop's view: every user's intents
    server = await make_broker(stats_interval_s=0.2, operator=operator.address)
    worker = await FakeWorker(server.url, behaviour=echo(), slots=4).start()
    async with TestClient(server.url, operator) as tui:
        await tui.send({"type": "subscribe", "topics": ["stats", "workers", "queue", "intents"]})
        snapshots = [await tui.next_other() for _ in range(4)]
        assert [s.topic for s in snapshots] == ["stats", "workers", "queue", "intents"]
        assert snapshots[1].data["workers"][0]["id"] == worker.worker_id
        assert snapshots[0].data["workers"] == 1

        async with TestClient(server.url) as user:
            guids = [await user.submit(f"burst {i}", intent="chat") for i in range(20)]
            for guid in guids:
                assert isinstance((await user.collect(guid))[-1], Result)
        pushes = await drain(tui, 0.6)
        # Idle realm: no more pushes.
        assert await drain(tui, 0.4) == []
    by_topic: dict[str, list[Stats]] = {}
    for p in pushes:
        by_topic.setdefault(p.topic, []).append(p)
    # 20 intents x 3 state changes, delivered in a few coalesced frames.
    assert 1 <= len(by_topic["intents"]) <= 5
    events = [e for p in by_topic["intents"] for e in p.data["events"]]
    done = {e["guid"] for e in events if e["state"] == "done"}
    assert done == set(guids)
    assert by_topic["stats"][-1].data["intents"]["completed"] == 20
    assert by_topic["queue"][-1].data["total"] == 0
    await worker.close()


async def test_a_user_sees_only_its_own_intents(make_broker) -> None:
    server = await make_broker(stats_interval_s=0.1)
    worker = await FakeWorker(server.url, behaviour=echo(), slots=4).start()
    async with TestClient(server.url) as me, TestClient(server.url) as other:
        await me.send({"type": "subscribe", "topics": ["intents"]})
        await me.next_other()
        theirs = await other.submit("not yours", intent="chat")
        assert isinstance((await other.collect(theirs))[-1], Result)
        mine = await me.submit("mine", intent="chat")
        assert isinstance((await me.collect(mine))[-1], Result)
        pushes = await drain(me, 0.5)
    seen = {e["guid"] for p in pushes for e in p.data["events"]}
    assert mine in seen and theirs not in seen
    assert {e["user"] for p in pushes for e in p.data["events"]} == {me.address}
    await worker.close()


async def test_unknown_topic_is_refused(broker) -> None:
    async with TestClient(broker.url) as client:
        await client.send({"type": "subscribe", "topics": ["gossip"]})
        err = await client.next_other()
        assert isinstance(err, Error) and err.code == "bad_params" and "gossip" in err.message

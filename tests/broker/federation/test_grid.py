"""Three realms on 127.0.0.1 that federate: A's users reach what only C serves, B stays fair while A floods it.

A has its own echo worker ("a-local"), B one slow single-slot worker
("shared"), C one worker of a model only C serves ("only-c"). A pins B and
C and they pin A, as operators do with `mtor federation peer add`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.protocol import SubmitQuery, Token
from mtor_cli.client import RealmClient, RealmError, new_guid
from tests.support.federation import Grid
from tests.support.peers import new_account
from tests.support.realm import wait_until
from worker.backends.base import Device
from worker.backends.echo import EchoBackend


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    grid = Grid(tmp_path_factory.mktemp("grid"), "abc").start()
    try:
        grid.realms["a"].add_worker([EchoBackend("a-local", Device())], slots=4)
        grid.realms["b"].add_worker([EchoBackend("shared", Device())], slots=1)
        grid.realms["c"].add_worker([EchoBackend("only-c", Device())], slots=4)
        for name in "abc":
            grid.realms[name].wait_workers(1)
        grid.pin_both("a", "b")
        grid.pin_both("a", "c")
        grid.wait_linked("a", "b", "echo")
        grid.wait_linked("a", "c", "echo")
        yield grid
    finally:
        grid.stop()


def _journal(db: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT guid, user, intent, state, query FROM intents").fetchall()
    return [{"guid": g, "user": u, "intent": i, "state": s, "query": json.loads(q)} for g, u, i, s, q in rows]


async def test_a_user_reaches_a_model_only_c_serves(grid: Grid) -> None:
    account = new_account()
    guid = new_guid()
    tokens: list[str] = []
    async with RealmClient(grid.url("a"), account) as client:
        result = await client.ask("hello from a", intent="echo", model="only-c", guid=guid, on_token=tokens.append)
        with pytest.raises(RealmError) as refused:
            await client.ask("nobody serves this", intent="echo", model="nowhere")
    assert result.text == "hello from a" and "".join(tokens) == "hello from a"
    assert result.model == "only-c"
    c_on_a = grid.peer("a", "c")["link"]
    assert result.worker == c_on_a["worker"]  # to A, C is one worker
    assert refused.value.code == "no_worker"

    # C ran it as an intent of realm A (one user), under a forward id, knowing nothing of the asker.
    rows = [r for r in _journal(grid.dbs["c"]) if r["user"] == grid.keys["a"]]
    assert len(rows) == 1 and rows[0]["state"] == "done"
    assert rows[0]["guid"] != guid and account.address not in json.dumps(rows)
    assert rows[0]["query"]["prompt"] == "hello from a"

    # C's signed receipt reached A, was accepted and acknowledged.
    def receipted() -> bool:
        we_owe = grid.peer("a", "c")["credit"]["we_owe"]
        owed = grid.peer("c", "a")["credit"]["owed_to_us"]
        return we_owe["receipts"] >= 1 and owed["acknowledged"] == owed["charged"]

    wait_until(receipted, 10, "C's receipt accepted by A and acknowledged")
    assert grid.peer("a", "c")["credit"]["we_owe"]["disputed"] == 0


async def test_a_local_worker_is_preferred_and_the_peer_is_one_worker(grid: Grid) -> None:
    async with RealmClient(grid.url("a"), new_account()) as client:
        local = await client.ask("mine", intent="echo", model="a-local")
    from tests.support.realm import workers

    rows = workers(grid.url("a"), "echo")
    peers = [w for w in rows if "federation" in w]
    assert {w["federation"]["name"] for w in peers} == {"b", "c"}
    assert local.worker not in {w["id"] for w in peers}
    c_row = next(w for w in peers if w["federation"]["name"] == "c")
    assert c_row["capabilities"][0]["models"] == ["only-c"]  # the union of C's pool


async def test_b_users_keep_their_share_while_a_floods_b(grid: Grid) -> None:
    flood, own = 16, 3
    done: list[str] = []

    async def one(client: RealmClient, who: str) -> None:
        await client.ask("one two", intent="echo", model="shared", params={"delay_s": 0.05}, timeout=60)
        done.append(who)

    async with RealmClient(grid.url("a"), new_account()) as a_user, RealmClient(grid.url("b"), new_account()) as b_user:
        a_tasks = [asyncio.create_task(one(a_user, "a")) for _ in range(flood)]
        # A's flood is queued at B (as one user, realm A) before B's own user asks.
        wait_queued = time.monotonic() + 10
        while time.monotonic() < wait_queued:
            if grid.peer("b", "a")["served"]["live"] >= 4:
                break
            await asyncio.sleep(0.02)
        await asyncio.gather(*(one(b_user, "b") for _ in range(own)))
        a_left = flood - done.count("a")
        await asyncio.gather(*a_tasks)
    assert done.count("a") == flood
    # Round robin between B's user and realm A: B's user waited about one of A's per own intent.
    assert a_left >= flood // 2, f"B's user finished only after {flood - a_left} of A's {flood}"


async def test_streamed_tokens_of_a_forwarded_intent_arrive_in_order(grid: Grid) -> None:
    prompt = "one two three four five six"
    async with RealmClient(grid.url("a"), new_account()) as client:
        events = [e async for e in client.submit(SubmitQuery(guid=new_guid(), prompt=prompt, intent="echo",
                                                            model="only-c", params={"delay_s": 0.01}))]
    text = "".join(e.text for e in events if isinstance(e, Token))
    assert text == prompt and events[-1].text == prompt  # type: ignore[union-attr]


async def test_subscribers_get_the_federation_pushed(grid: Grid) -> None:
    async with RealmClient(grid.url("a"), new_account()) as client:
        pushes = client.subscribe(["federation"])
        first = await asyncio.wait_for(pushes.__anext__(), 10)
        assert first.topic == "federation"  # type: ignore[union-attr]
        assert {p["name"]: p["link"]["state"] for p in first.data["peers"]} == {"b": "connected", "c": "connected"}  # type: ignore[union-attr]
        await client.ask("count me", intent="echo", model="only-c")
        while True:  # pushed again when the traffic changed (never while idle)
            push = await asyncio.wait_for(pushes.__anext__(), 10)
            c = next(p for p in push.data["peers"] if p["name"] == "c")  # type: ignore[union-attr]
            if c["link"]["traffic"].get("results", 0) > next(
                p for p in first.data["peers"] if p["name"] == "c"  # type: ignore[union-attr]
            )["link"]["traffic"].get("results", 0):
                break
        await pushes.aclose()

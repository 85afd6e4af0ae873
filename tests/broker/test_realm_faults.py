"""A realm of broker processes when things break: kill -9 of a broker under
load, a Redis restart, PostgreSQL down for a while.

Everything is real: `mtor broker serve --engine ... --db ...` and `mtor
worker serve` processes, redis-server and postgres started by the tests,
clients speaking the bus through the SDK with every broker's URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from broker import protocol as p
from mtor_cli.client import RealmClient, RealmError
from tests.support.engines import RedisServer
from tests.support.peers import new_account
from tests.support.realm import (
    free_port,
    get_json,
    mtor_command,
    process_env,
    spawn,
    spawn_worker,
    stop_process,
    url_for,
    wait_healthy,
    wait_until,
)

FAST = ("--engine-beat", "0.2", "--engine-dead", "1.5", "--heartbeat", "0.5")


class Brokers:
    """``count`` broker processes of one realm, each on its own port, each with its
    own home (``shared_home``: all in that one, as a paid realm's brokers on one
    machine share the ledger folder); each logs to ``broker<i>.log`` in its home."""

    def __init__(
        self, tmp: Path, engine: str, db: str, count: int, *extra: str, shared_home: Path | None = None
    ) -> None:
        self.realm = f"t{uuid.uuid4().hex[:8]}"
        self.ports = [free_port() for _ in range(count)]
        self.homes = [shared_home or tmp / f"broker{i}" for i in range(count)]
        args = ("--engine", engine, "--realm", self.realm, *FAST, *extra)
        self.procs = [
            spawn(["broker", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", db, *args], home, f"broker{i}.log")
            for i, (port, home) in enumerate(zip(self.ports, self.homes, strict=True))
        ]
        try:
            for url in self.urls:
                wait_healthy(url, timeout=240)  # each loads its recogniser before it listens: slow on a busy machine
        except BaseException:
            for proc in self.procs:  # no test holds them yet: stop them here
                stop_process(proc, signal.SIGKILL)
            raise

    @property
    def urls(self) -> list[str]:
        return [url_for(port) for port in self.ports]

    def rotated(self, first: int) -> str:
        """Every broker's URL, starting with broker ``first`` (spreads clients and workers)."""
        urls = self.urls
        return ",".join(urls[first:] + urls[:first])

    def kill(self, index: int) -> None:
        stop_process(self.procs[index], signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for proc in self.procs:
            stop_process(proc, sig)

    def log(self, index: int) -> str:
        return (self.homes[index] / f"broker{index}.log").read_text(errors="replace")


def realm_sees(url: str, brokers: int, workers: int, timeout: float = 30.0) -> None:
    def enough() -> bool:
        listed = get_json(url, "/v1/brokers") or {"brokers": []}
        found = get_json(url, "/v1/workers") or {"workers": []}
        return len(listed["brokers"]) == brokers and len(found["workers"]) == workers

    wait_until(enough, timeout, f"{url} to see {brokers} brokers and {workers} workers")


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    """Worker processes a test started; stopped after it."""
    started: list[Any] = []
    yield started
    for proc in started:
        stop_process(proc, signal.SIGKILL)


async def ask_until_done(client: RealmClient, prompt: str, accepted: set[str], **fields: Any) -> p.Result:
    """One intent, resubmitted under the same guid while the realm answers
    `unavailable` (a store down): the client's side of "retry, the guid is safe"."""
    guid = uuid.uuid4().hex
    query = p.SubmitQuery(guid=guid, prompt=prompt, intent="echo", **fields)
    while True:
        async with contextlib.aclosing(client.submit(query)) as events:
            async for event in events:
                if isinstance(event, p.Accepted):
                    accepted.add(guid)
                elif isinstance(event, p.Result):
                    return event
                elif isinstance(event, p.Error):
                    if event.code != "unavailable":
                        raise RealmError.from_error(event)
                    break
        await asyncio.sleep(0.2)


def journal_states(db: str) -> dict[str, str]:
    with psycopg.connect(db) as conn:
        return dict(conn.execute("SELECT guid, state FROM intents").fetchall())


async def test_kill_9_of_a_broker_under_load_loses_no_accepted_intent(
    tmp_path: Path, redis_server: Any, pg_database: str, processes: list[Any]
) -> None:
    brokers = Brokers(tmp_path, redis_server.url, pg_database, 3)
    try:
        for i in range(2):
            processes.append(spawn_worker(brokers.rotated(i), tmp_path / f"worker{i}", "echo", None, "--slots", "4"))
        realm_sees(brokers.urls[2], 3, 2)
        clients = [RealmClient(brokers.rotated(i % 3), new_account(), reconnect_s=30) for i in range(6)]
        for client in clients:
            await client.connect()
        on_victim = [c for c in clients if c.url.startswith(brokers.urls[0])]
        accepted: set[str] = set()

        async def lane(client: RealmClient, n: int) -> list[tuple[str, p.Result]]:
            done = []
            for k in range(n):
                prompt = f"lane {id(client) % 997} ask {k} of {n}"
                done.append((prompt, await ask_until_done(client, prompt, accepted, params={"delay_s": 0.02})))
            return done

        load = asyncio.gather(*(lane(c, 12) for c in clients for _ in range(4)))  # 24 lanes, 288 intents
        await asyncio.sleep(1.5)
        brokers.kill(0)
        answered = [pair for lane_done in await asyncio.wait_for(load, 120) for pair in lane_done]
        for client in clients:
            await client.close()
    finally:
        brokers.stop()

    assert len(answered) == 288
    assert all(result.text == prompt for prompt, result in answered)
    assert len({result.guid for _, result in answered}) == 288
    assert on_victim and all(c.reconnects >= 1 for c in on_victim)
    states = journal_states(pg_database)
    assert {guid: states[guid] for guid in accepted} == dict.fromkeys(accepted, "done")
    assert sum(1 for state in states.values() if state != "done") == 0
    assert "reaped broker(s) that stopped beating" in brokers.log(1) + brokers.log(2)


async def test_a_redis_restart_loses_no_accepted_intent(
    tmp_path: Path, pg_database: str, processes: list[Any]
) -> None:
    with RedisServer(appendonly=True) as redis:
        brokers = Brokers(tmp_path, redis.url, pg_database, 2)
        try:
            processes.append(spawn_worker(brokers.rotated(0), tmp_path / "worker", "echo", None, "--slots", "4"))
            realm_sees(brokers.urls[1], 2, 1)
            clients = [RealmClient(brokers.rotated(i), new_account(), reconnect_s=30) for i in range(2)]
            for client in clients:
                await client.connect()
            accepted: set[str] = set()

            async def lane(client: RealmClient, n: int) -> list[p.Result]:
                return [await ask_until_done(client, f"steady ask {k}", accepted, params={"delay_s": 0.05})
                        for k in range(n)]  # fmt: skip

            load = asyncio.gather(*(lane(c, 10) for c in clients for _ in range(3)))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(redis.restart, 1.0)  # SIGTERM writes the append-only file
            results = [r for lane_done in await asyncio.wait_for(load, 120) for r in lane_done]
            for client in clients:
                await client.close()
        finally:
            brokers.stop()
    assert len(results) == 60 and all(r.text.startswith("steady ask") for r in results)
    states = journal_states(pg_database)
    assert all(states[guid] == "done" for guid in accepted) and len(accepted) >= 60
    assert "does not answer" in brokers.log(0) + brokers.log(1)


async def test_postgres_down_refuses_new_intents_clearly_and_holds_results_until_it_is_back(
    tmp_path: Path, redis_server: Any, postgres_server: Any, pg_database: str, processes: list[Any]
) -> None:
    brokers = Brokers(tmp_path, redis_server.url, pg_database, 2)
    try:
        processes.append(spawn_worker(brokers.rotated(1), tmp_path / "worker", "echo", None, "--slots", "2"))
        realm_sees(brokers.urls[0], 2, 1)
        # Any broker shows the whole realm: both brokers, the worker wherever it is.
        shown = subprocess.run(mtor_command("broker", "status", "--broker", brokers.rotated(0), "--json"),
                               env=process_env(tmp_path / "cli"), capture_output=True, text=True, timeout=60)  # fmt: skip
        status = json.loads(shown.stdout)
        assert sorted(b["url"] for b in status["brokers"]) == sorted(brokers.urls)
        assert len(status["workers"]) == 1
        assert status["stats"]["brokers"] == 2 and status["health"]["workers"] == 1
        table = subprocess.run(mtor_command("broker", "status", "--broker", brokers.urls[1]),
                               env=process_env(tmp_path / "cli"), capture_output=True, text=True, timeout=60)  # fmt: skip
        assert "brokers 2" in table.stdout and table.stdout.count("ws://127.0.0.1:") >= 3
        async with RealmClient(brokers.rotated(0), new_account(), reconnect_s=30) as client:
            running = asyncio.create_task(
                client.ask("finish while the database is away", intent="echo", params={"delay_s": 0.3})
            )
            await asyncio.sleep(0.6)
            await asyncio.to_thread(postgres_server.stop)
            refused_guid = uuid.uuid4().hex
            with pytest.raises(RealmError) as refused:
                await client.ask("not now", intent="echo", guid=refused_guid, timeout=20)
            assert refused.value.code == "unavailable" and refused.value.detail["retry_after"] > 0
            assert "database" in refused.value.message
            await asyncio.sleep(1.0)
            assert not running.done()  # its result waits until the journal holds it
            await asyncio.to_thread(postgres_server.start)
            finished = await asyncio.wait_for(running, 30)
            assert finished.text == "finish while the database is away"
            again = await client.ask("not now", intent="echo", guid=refused_guid, timeout=20)
            assert again.text == "not now" and not again.replayed
    finally:
        brokers.stop()
    states = journal_states(pg_database)
    assert states[finished.guid] == "done" and states[refused_guid] == "done"

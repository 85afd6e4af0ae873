"""A realm broker stops when asked, even when Redis and PostgreSQL are both gone.

`mtor broker serve --engine ... --db ...` as a process, on its own throwaway
redis-server and PostgreSQL (this test kills them): an intent finishes after
both died, so its outcome can be stored nowhere; SIGTERM must still stop the
broker within its grace (`--stop-grace`), saying what it could not deliver.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from broker.migrations import migrate_postgres
from mtor_cli.client import RealmClient
from tests.support.engines import PostgresServer, RedisServer
from tests.support.peers import new_account
from tests.support.realm import (
    free_port,
    log_of,
    spawn_broker,
    spawn_worker,
    stop_process,
    url_for,
    wait_healthy,
    wait_workers,
)

GRACE_S = 2.0


async def test_a_broker_whose_redis_and_postgres_are_gone_stops_within_its_grace(tmp_path: Path) -> None:
    procs: list[Any] = []
    stranded = uuid.uuid4().hex
    with RedisServer(appendonly=True) as redis, PostgresServer() as pg:
        db = pg.create_database()
        await migrate_postgres(db)
        port = free_port()
        args = ("--engine", redis.url, "--realm", "stopping", "--engine-beat", "0.2", "--engine-dead", "1.0")
        broker = spawn_broker(port, db, tmp_path / "broker", *args, "--stop-grace", str(GRACE_S))
        procs.append(broker)
        try:
            url = url_for(port)
            wait_healthy(url, timeout=240)
            procs.append(spawn_worker(url, tmp_path / "worker", "echo", None, "--slots", "2"))
            wait_workers(url, 1)
            account = new_account()
            async with RealmClient(url, account) as client:
                done = await client.ask("stored", intent="echo")
                # Its result comes back after both servers are gone: nowhere to store it.
                running = asyncio.create_task(
                    client.ask("stranded", intent="echo", guid=stranded, params={"delay_s": 2.0}, timeout=60)
                )
                await asyncio.sleep(0.8)
                await asyncio.to_thread(redis.stop, signal.SIGKILL)
                await asyncio.to_thread(pg.stop, signal.SIGKILL)
                await asyncio.sleep(2.5)  # the worker answered; the broker holds the outcome
                assert not running.done()
                t0 = time.monotonic()
                status = await asyncio.to_thread(stop_process, broker, signal.SIGTERM, 60.0)
                took = time.monotonic() - t0
                running.cancel()
            log = log_of(tmp_path / "broker", "broker.log")
            assert status == 0, log[-3000:]
            # The grace, then the other steps' own short bounds (it used to need SIGKILL).
            assert took < GRACE_S + 10, (took, log[-3000:])
            assert "could not deliver 1 outcome(s) to the journal (PostgreSQL)" in log, log[-3000:]
            assert log.rstrip().splitlines()[-1].startswith("broker stopped"), log[-3000:]

            # Nothing is lost: the journal holds the stranded intent unfinished,
            # and resubmitting its guid to the next broker gets its answer.
            await asyncio.to_thread(redis.start)
            await asyncio.to_thread(pg.start)
            with psycopg.connect(db) as conn:
                states = dict(conn.execute("SELECT guid, state FROM intents").fetchall())
            assert states == {done.guid: "done", stranded: "queued"}
            port = free_port()
            procs.append(spawn_broker(port, db, tmp_path / "next", *args))
            url = url_for(port)
            wait_healthy(url, timeout=240)
            procs.append(spawn_worker(url, tmp_path / "worker2", "echo", None, "--slots", "2"))
            wait_workers(url, 1)
            async with RealmClient(url, account) as again:
                answer = await again.ask("stranded", intent="echo", guid=stranded, timeout=60)
            assert answer.text == "stranded"
        finally:
            for proc in procs:
                stop_process(proc, signal.SIGKILL)

"""A peer realm killed mid-stream: the intent runs again elsewhere, its user is charged once.

Realm B runs as its own processes (`mtor broker serve`, `mtor worker serve`)
so it can be SIGKILLed; realms A (charging through a dict billing) and C run
in threads. A's user asks for a model only B serves; once B streams, C gets
a worker for that model too, and B is killed.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

from mtor_cli.client import RealmClient, new_guid
from tests.support.billing import COST, DictBilling
from tests.support.federation import Grid, pin, realm_key
from tests.support.peers import new_account
from tests.support.realm import (
    free_port,
    log_of,
    spawn_broker,
    spawn_worker,
    stop_process,
    url_for,
    wait_healthy,
)
from worker.backends.base import Device
from worker.backends.echo import EchoBackend

PROMPT = "one two three four five six seven eight"


async def test_a_peer_killed_mid_stream_the_intent_reruns_elsewhere_charged_once(tmp_path: Path) -> None:
    user = new_account()
    billing = DictBilling({user.address: 10_000})
    grid = Grid(tmp_path / "grid", "ac", billing={"a": billing}).start()
    b_home = tmp_path / "b"
    b_db = b_home / "broker.db"
    b_db.parent.mkdir(parents=True)
    b_port = free_port()
    b_url = url_for(b_port)
    b_key = realm_key(b_db).address
    pin(b_db, "a", grid.url("a"), grid.keys["a"])
    pin(grid.dbs["a"], "b", b_url, b_key)
    grid.pin_both("a", "c")
    broker = spawn_broker(b_port, b_db, b_home, "--realm", "b")
    worker = spawn_worker(b_url, b_home / "worker", "echo", "shared")
    try:
        await asyncio.to_thread(wait_healthy, b_url, 60)
        await asyncio.to_thread(grid.wait_linked, "a", "b", "echo", 60)
        await asyncio.to_thread(grid.wait_linked, "a", "c")
        guid = new_guid()
        tokens: list[str] = []
        first_token = asyncio.Event()

        def on_token(text: str) -> None:
            tokens.append(text)
            first_token.set()

        async with RealmClient(grid.url("a"), user) as client:
            asking = asyncio.create_task(
                client.ask(PROMPT, intent="echo", model="shared", params={"delay_s": 0.3}, guid=guid,
                           on_token=on_token, timeout=60)
            )
            await asyncio.wait_for(first_token.wait(), 30)
            grid.realms["c"].add_worker([EchoBackend("shared", Device())])
            await asyncio.to_thread(grid.wait_linked, "a", "c", "echo")
            broker.send_signal(signal.SIGKILL)
            result = await asking
        assert result.text == PROMPT and "".join(tokens) == PROMPT
        assert result.worker == grid.peer("a", "c")["link"]["worker"]  # C ran it again
        assert grid.peer("a", "b")["link"]["state"] != "connected"
        mine = [c for c in billing.calls if c[0] in ("hold", "capture", "release") and guid in c]
        assert [c[0] for c in mine] == ["hold", "capture"] and result.cost == COST

        # B comes back: the intent of A's it restored is ended, never run (A ran it elsewhere).
        stop_process(worker)
        broker = spawn_broker(b_port, b_db, b_home, "--realm", "b")
        await asyncio.to_thread(wait_healthy, b_url, 60)
        with sqlite3.connect(b_db) as conn:
            rows = conn.execute("SELECT state FROM intents WHERE user = ?", (grid.keys["a"],)).fetchall()
        assert rows == [("cancelled",)], log_of(b_home, "broker.log")[-2000:]
    finally:
        stop_process(worker)
        stop_process(broker)
        grid.stop()

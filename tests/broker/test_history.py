"""History and realm totals from the journal, over signed and public REST."""

from __future__ import annotations

import asyncio
import base64

import msgspec
import pytest

from broker.protocol import Attachment, Result, Work, WorkResult
from tests.broker.conftest import STORES, both_stores
from tests.broker.test_accounts import refused, signed
from tests.broker.test_billing import COST, DictBilling
from tests.support.peers import FakeWorker, TestClient, echo, fail, new_account

store = pytest.fixture(params=STORES)(both_stores)  # the same history from SQLite and PostgreSQL

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake image bytes").decode()


async def _picture(w: FakeWorker, work: Work) -> None:
    await w.send(WorkResult(guid=work.guid, attachments=[Attachment(kind="image", data=PNG, mime="image/png")]))


async def test_history_lists_only_your_intents_and_show_replays_one(make_broker) -> None:
    alice, bob = new_account(), new_account()
    billing = DictBilling({alice.address: 10_000, bob.address: 10_000})
    server = await make_broker(billing=billing)
    chat = await FakeWorker(server.url, intents=("chat",), behaviour=echo()).start()
    await FakeWorker(server.url, intents=("imagine",), behaviour=_picture).start()
    broken = await FakeWorker(server.url, intents=("vision",), behaviour=fail(retryable=False)).start()
    async with TestClient(server.url, alice) as a, TestClient(server.url, bob) as b:
        said = await a.ask("hello there", intent="chat")
        drawn = await a.ask("a red dot", intent="imagine")
        failed = await a.ask("what is in this picture", intent="vision")
        other = await b.ask("bob's question", intent="chat")
    await asyncio.sleep(0.05)  # committed at the end of the pass

    rows = (await signed(server, "GET", "/v1/history?limit=10", alice))["history"]
    assert [(r["guid"], r["intent"], r["status"]) for r in rows] == [
        (failed.guid, "vision", "failed"),
        (drawn.guid, "imagine", "done"),
        (said.guid, "chat", "done"),
    ]
    assert rows[2]["worker"] == chat.worker_id and rows[2]["cost"] == COST and rows[2]["model"] == "fake"
    assert rows[2]["prompt"] == "hello there" and rows[2]["duration_s"] >= 0
    assert rows[0]["error_code"] == "worker_failed" and rows[0]["worker"] is None
    assert len((await signed(server, "GET", "/v1/history?limit=1", alice))["history"]) == 1

    entry = await signed(server, "GET", f"/v1/history/{drawn.guid}", alice)
    result = msgspec.convert(entry["result"], Result)
    assert result.attachments[0].data == PNG and result.attachments[0].mime == "image/png"
    assert (await refused(server, "GET", f"/v1/history/{other.guid}", alice)).code == "unknown_guid"
    assert broken.received  # the failure came from the worker

    totals = await signed(server, "GET", "/v1/totals", bob)
    assert totals["total"] == 4
    assert totals["intents"]["chat"]["done"] == 2 and totals["intents"]["vision"]["failed"] == 1
    assert totals["success_rate"] == 0.75 and totals["intents"]["chat"]["success_rate"] == 1.0
    lat = totals["intents"]["chat"]["latency_s"]
    assert lat["count"] == 2 and 0 <= lat["median"] <= lat["p95"]
    assert totals["users"]["all_time"] == 2 and totals["users"]["active_24h"] == 2
    assert totals["users"]["connected"] == 0 and totals["workers"]["connected"] == 3
    assert totals["tokens"]["spent"] == 3 * COST
    assert totals["tokens"]["earned_by_worker"][chat.worker_id] == 2 * COST

"""/healthz, /v1/workers, /v1/stats and /metrics."""

from __future__ import annotations

import aiohttp

from broker.protocol import Result
from tests.broker.conftest import get_json
from tests.support.peers import FakeWorker, TestClient, echo


async def test_rest_endpoints_report_the_realm(broker) -> None:
    worker = await FakeWorker(broker.url, intents=("chat", "echo"), models=("m1",), slots=2, behaviour=echo()).start()
    async with TestClient(broker.url) as client:
        for _ in range(3):
            assert isinstance(await client.ask("count me", intent="chat"), Result)
        bad = await client.ask("x", intent="teleport")
        assert bad.code == "unknown_intent"

        health = await get_json(broker, "/healthz")
        assert health["status"] == "ok" and health["workers"] == 1 and health["clients"] == 1

        workers = (await get_json(broker, "/v1/workers"))["workers"]
        assert len(workers) == 1
        w = workers[0]
        assert w["id"] == worker.worker_id and w["address"] == worker.account.address
        assert w["slots"] == 2 and w["running"] == 0
        assert {c["intent"] for c in w["capabilities"]} == {"chat", "echo"}
        assert w["health"]["state"] == "healthy" and w["health"]["jobs_ok"] == 3

        stats = await get_json(broker, "/v1/stats")
        assert stats["intents"]["completed"] == 3 and stats["intents"]["rejected"] == 1
        assert stats["slots_total"] == 2 and stats["workers_by_state"]["healthy"] == 1

        async with aiohttp.ClientSession() as http, http.get(broker.http_url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    assert 'mtor_intents_total{intent="chat",outcome="done"} 3.0' in text
    assert 'mtor_rejected_total{code="unknown_intent"} 1.0' in text
    assert 'mtor_workers{state="healthy"} 1.0' in text
    assert 'mtor_worker_slots{use="total"} 2.0' in text
    assert "mtor_intent_seconds_bucket" in text
    await worker.close()


async def test_each_broker_has_its_own_metrics_registry(make_broker, tmp_path) -> None:
    a = await make_broker()
    b = await make_broker(db_path=tmp_path / "other.db")
    worker = await FakeWorker(a.url, behaviour=echo()).start()
    async with TestClient(a.url) as client:
        await client.ask("only on a", intent="chat")
    assert 'outcome="done"' not in await _metrics(b)
    assert 'outcome="done"' in await _metrics(a)
    await worker.close()


async def _metrics(server) -> str:
    async with aiohttp.ClientSession() as http, http.get(server.http_url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()

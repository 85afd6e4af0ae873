"""The Worker against the real BrokerServer, asked through the real RealmClient."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from broker import BrokerConfig, BrokerServer
from mtor_cli.client import RealmClient, RealmError
from worker import Device, Worker, WorkerConfig
from worker.backends.chat import ChatBackend
from worker.backends.echo import EchoBackend


@pytest.fixture
async def realm(tmp_path: Path, tiny_onnx_model: Path) -> AsyncIterator[tuple[str, Worker, ChatBackend]]:
    broker = BrokerServer(BrokerConfig(port=0, db_path=tmp_path / "broker.db"))
    await broker.start()
    chat = ChatBackend(str(tiny_onnx_model), Device.parse(None))
    worker = Worker(
        WorkerConfig(broker_url=broker.url, slots=4, name="test-rig"),
        [chat, EchoBackend(None, Device.parse(None))],
        Account.create(),
    )
    serving = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 30)
    yield broker.url, worker, chat
    await worker.stop()
    await asyncio.wait_for(serving, 10)
    await broker.stop()


async def test_concurrent_chats_stream_through_the_realm(realm: Any) -> None:
    url, _worker, chat = realm
    prompts = ["hello", "tell me a joke", "workers serve models", "imagine a cat"]
    async with RealmClient(url, Account.create()) as client:
        alone = [
            (await client.ask(p, intent="chat", params={"temperature": 0, "max_tokens": 40})).text for p in prompts
        ]
        streams: list[list[str]] = [[] for _ in prompts]
        chat.engine.max_rows_seen = 0
        results = await asyncio.gather(
            *(
                client.ask(p, intent="chat", params={"temperature": 0, "max_tokens": 40}, on_token=streams[i].append)
                for i, p in enumerate(prompts)
            )
        )
    assert chat.engine.max_rows_seen > 1
    for i, result in enumerate(results):
        assert result.text == alone[i] and result.text
        assert "".join(streams[i]) == result.text
        assert result.model == chat.model_name
        assert result.usage.completion_tokens > 0


async def test_bad_params_reach_the_client_and_the_worker_keeps_serving(realm: Any) -> None:
    url, _worker, _ = realm
    async with RealmClient(url, Account.create()) as client:
        with pytest.raises(RealmError) as err:
            await client.ask("hello", intent="chat", params={"max_tokens": -5})
        assert "max_tokens" in err.value.message
        echoed = await client.ask("still serving", intent="echo")
    assert echoed.text == "still serving"


async def test_cancel_from_the_client_frees_the_worker(realm: Any) -> None:
    url, _worker, _ = realm
    words = " ".join(f"w{i}" for i in range(200))
    async with RealmClient(url, Account.create()) as client:
        first = asyncio.Event()

        async def on_token(_: str) -> None:
            first.set()

        asking = asyncio.create_task(
            client.ask(words, intent="echo", params={"delay_s": 0.02}, guid="long-job", on_token=on_token)
        )
        await asyncio.wait_for(first.wait(), 10)
        await client.cancel("long-job")
        with pytest.raises(RealmError) as err:
            await asking
        assert err.value.code == "cancelled"
        # The worker answered the cancel, so its slots are free for the next jobs.
        results = await asyncio.gather(*(client.ask(f"job {i}", intent="echo") for i in range(4)))
    assert [r.text for r in results] == [f"job {i}" for i in range(4)]


async def _echo_realm(tmp_path: Path, **worker_config: Any) -> tuple[BrokerServer, Worker, asyncio.Task[None]]:
    broker = BrokerServer(BrokerConfig(port=0, db_path=tmp_path / "drain.db"))
    await broker.start()
    worker = Worker(
        WorkerConfig(broker_url=broker.url, slots=4, name="leaving", **worker_config),
        [EchoBackend(None, Device.parse(None))],
        Account.create(),
    )
    serving = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 30)
    return broker, worker, serving


async def _running(broker: BrokerServer, n: int) -> None:
    while sum(len(w.running) for w in broker.parts.registry) < n:
        await asyncio.sleep(0.01)


async def test_a_stopping_worker_finishes_its_running_jobs_first(tmp_path: Path) -> None:
    broker, worker, serving = await _echo_realm(tmp_path, drain_s=10.0)
    async with RealmClient(broker.url, Account.create()) as client:
        asks = [
            asyncio.create_task(client.ask(f"slow job {i}", intent="echo", params={"delay_s": 0.3})) for i in range(4)
        ]
        await asyncio.wait_for(_running(broker, 4), 10)
        await worker.stop()
        results = await asyncio.gather(*asks)
        await asyncio.wait_for(serving, 10)
    assert [r.text for r in results] == [f"slow job {i}" for i in range(4)]
    assert {r.worker for r in results} == {worker.worker_id}
    await broker.stop()


async def test_a_stopping_worker_hands_back_what_it_cannot_finish_without_blame(tmp_path: Path) -> None:
    broker, worker, serving = await _echo_realm(tmp_path, drain_s=0.2)
    async with RealmClient(broker.url, Account.create()) as client:
        asks = [
            asyncio.create_task(client.ask(f"long job {i}", intent="echo", params={"delay_s": 1.0})) for i in range(4)
        ]
        await asyncio.wait_for(_running(broker, 4), 10)
        (leaving,) = list(broker.parts.registry)
        await worker.stop()
        await asyncio.wait_for(serving, 10)
        assert leaving.health.jobs_failed == 0 and leaving.draining
        record = await broker.parts.accounts.trust(leaving.address)
        assert (record.aborted, record.maintenance) == (0, None)
        other = Worker(
            WorkerConfig(broker_url=broker.url, slots=4, name="other"), [EchoBackend(None, Device.parse(None))],
            Account.create(),
        )
        other_task = asyncio.create_task(other.run())
        results = await asyncio.wait_for(asyncio.gather(*asks), 60)
        await other.stop()
        await asyncio.wait_for(other_task, 10)
    assert [r.text for r in results] == [f"long job {i}" for i in range(4)]
    assert {r.worker for r in results} == {other.worker_id}
    assert broker.parts.views.stats()["intents"]["requeued"] == 4
    await broker.stop()

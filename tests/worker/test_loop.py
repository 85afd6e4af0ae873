"""The worker loop against a broker-side WebSocket server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import torch

from broker.protocol import Cancel, Failed, Ping, Pong, Token, Usage, Work, WorkResult
from tests.worker.broker_side import BrokerSide
from worker import Backend, Device, Emitter, Worker, WorkerConfig, WorkerRejected
from worker.backends.chat import ChatBackend
from worker.backends.echo import EchoBackend


class FlakyBackend(Backend):
    """Echoes, except that the prompt "boom" raises and "oom" runs out of CUDA memory."""

    intent = "flaky"

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        if work.prompt == "boom":
            raise RuntimeError("the model fell over")
        if work.prompt == "oom":
            raise torch.cuda.OutOfMemoryError("tried to allocate 20.00 GiB")
        await out.token(work.prompt)
        return WorkResult(guid=work.guid, text=work.prompt)


@pytest.fixture
async def broker() -> AsyncIterator[BrokerSide]:
    side = BrokerSide()
    await side.start()
    yield side
    await side.stop()


def config(url: str, **kw: Any) -> WorkerConfig:
    return WorkerConfig(broker_url=url, reconnect_initial_s=0.05, reconnect_max_s=0.2, **kw)


async def serve(worker: Worker) -> asyncio.Task[None]:
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 30)
    return task


async def shut(worker: Worker, task: asyncio.Task[None]) -> None:
    await worker.stop()
    await asyncio.wait_for(task, 10)


def echo_work(prompt: str, **params: Any) -> Work:
    return Work(guid=str(uuid.uuid4()), intent="echo", prompt=prompt, params=params)


async def test_registers_with_a_signed_challenge_and_its_capabilities(
    broker: BrokerSide, account: Any
) -> None:
    worker = Worker(config(broker.url, slots=3, name="rig"), [EchoBackend(None, Device())], account)
    task = await serve(worker)
    conn = await broker.next_worker()
    assert conn.signer == account.address == conn.register.address
    assert [c.intent for c in conn.register.capabilities] == ["echo"]
    assert conn.register.slots == 3 and conn.register.name == "rig"
    assert worker.worker_id == "w0"
    await shut(worker, task)
    await asyncio.wait_for(conn.closed.wait(), 5)  # stop() closed the socket


async def test_streams_tokens_then_result_and_answers_ping(broker: BrokerSide, account: Any) -> None:
    worker = Worker(config(broker.url), [EchoBackend(None, Device())], account)
    task = await serve(worker)
    conn = await broker.next_worker()
    await conn.send(Ping(nonce="n1", ts=1.5))
    assert await conn.recv() == Pong(nonce="n1", ts=1.5)

    job = echo_work("neon mountains under a purple sky")
    await conn.send(job)
    msgs = await conn.recv_until(job.guid)
    tokens, result = msgs[:-1], msgs[-1]
    assert all(isinstance(t, Token) for t in tokens) and len(tokens) == 6
    assert isinstance(result, WorkResult)
    assert "".join(t.text for t in tokens) == result.text == job.prompt
    assert result.usage == Usage(prompt_tokens=6, completion_tokens=6)
    await shut(worker, task)


async def test_bad_input_fails_before_any_model_runs(broker: BrokerSide, account: Any) -> None:
    worker = Worker(config(broker.url), [EchoBackend(None, Device())], account)
    task = await serve(worker)
    conn = await broker.next_worker()

    bad = echo_work("hello", delay_s=-3)
    await conn.send(bad)
    [failed] = await conn.recv_until(bad.guid)  # no token came before it
    assert isinstance(failed, Failed)
    assert failed.code == "bad_params" and not failed.retryable
    assert "delay_s" in failed.message

    other = Work(guid="g-other", intent="imagine", prompt="a cat")
    await conn.send(other)
    [failed] = await conn.recv_until("g-other")
    assert failed.code == "unknown_intent" and failed.retryable  # another worker may serve it
    assert "echo" in failed.message

    wrong_model = Work(guid="g-model", intent="echo", prompt="a", model="gpt-9")
    await conn.send(wrong_model)
    [failed] = await conn.recv_until("g-model")
    assert failed.code == "no_worker" and "gpt-9" in failed.message
    await shut(worker, task)


async def test_backend_errors_fail_the_job_and_the_worker_keeps_serving(
    broker: BrokerSide, account: Any
) -> None:
    worker = Worker(config(broker.url), [FlakyBackend(None, Device())], account)
    task = await serve(worker)
    conn = await broker.next_worker()
    for prompt, needle in (("boom", "the model fell over"), ("oom", "CUDA out of memory")):
        await conn.send(Work(guid=prompt, intent="flaky", prompt=prompt))
        [failed] = await conn.recv_until(prompt)
        assert isinstance(failed, Failed)
        assert failed.code == "worker_failed" and not failed.retryable
        assert needle in failed.message
    await conn.send(Work(guid="fine", intent="flaky", prompt="still here"))
    msgs = await conn.recv_until("fine")
    assert isinstance(msgs[-1], WorkResult) and msgs[-1].text == "still here"
    assert worker.jobs_failed == 2 and worker.jobs_done == 1
    await shut(worker, task)


async def test_runs_at_most_slots_jobs_at_once(broker: BrokerSide, account: Any) -> None:
    worker = Worker(config(broker.url, slots=2), [EchoBackend(None, Device())], account)
    task = await serve(worker)
    conn = await broker.next_worker()
    jobs = [echo_work("a b c", delay_s=0.05) for _ in range(5)]
    for job in jobs:
        await conn.send(job)
    events: list[tuple[str, str]] = []
    done = 0
    while done < len(jobs):
        msg = await conn.recv()
        if isinstance(msg, Token) and msg.index == 0:
            events.append(("start", msg.guid))
        elif isinstance(msg, WorkResult):
            events.append(("end", msg.guid))
            done += 1
            assert msg.text == "a b c"
    running, peak = 0, 0
    for kind, _ in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2
    await shut(worker, task)


async def test_cancel_stops_a_running_job(broker: BrokerSide, account: Any) -> None:
    worker = Worker(config(broker.url), [EchoBackend(None, Device())], account)
    task = await serve(worker)
    conn = await broker.next_worker()
    job = echo_work(" ".join(f"w{i}" for i in range(50)), delay_s=0.02)
    await conn.send(job)
    first = await conn.recv()
    assert isinstance(first, Token)
    await conn.send(Cancel(guid=job.guid))
    rest = await conn.recv_until(job.guid)
    assert isinstance(rest[-1], Failed) and rest[-1].code == "cancelled"
    assert len(rest) - 1 < 10  # it stopped well before the 50 words
    await shut(worker, task)


async def test_reconnects_after_the_broker_drops_and_restarts(account: Any) -> None:
    side = BrokerSide()
    await side.start()
    worker = Worker(config(side.url), [EchoBackend(None, Device())], account)
    task = await serve(worker)
    conn = await side.next_worker()
    await conn.close()  # the broker drops the connection
    again = await side.next_worker()
    assert worker.registrations == 2

    port = side.port
    await side.stop()  # the broker goes away entirely ...

    async def unregistered() -> None:
        while worker.registered.is_set():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(unregistered(), 10)
    await asyncio.sleep(0.3)  # ... long enough for some reconnect attempts to fail
    assert worker.registrations == 2
    revived = BrokerSide()
    await revived.start(port)  # ... and comes back on the same port
    conn = await revived.next_worker()
    job = echo_work("back again")
    await conn.send(job)
    msgs = await conn.recv_until(job.guid)
    assert msgs[-1].text == "back again"
    assert worker.registrations == 3 and again is not conn
    await shut(worker, task)
    await revived.stop()


async def test_a_refused_registration_ends_run_with_the_reason(account: Any) -> None:
    side = BrokerSide(reject_with="banned")
    await side.start()
    worker = Worker(config(side.url), [EchoBackend(None, Device())], account)
    with pytest.raises(WorkerRejected) as err:
        await asyncio.wait_for(worker.run(), 10)
    assert err.value.code == "banned"
    await side.stop()


async def test_concurrent_chats_through_the_loop_stream_independently(
    broker: BrokerSide, account: Any, tiny_chat_model: Path
) -> None:
    chat = ChatBackend(str(tiny_chat_model), Device())
    worker = Worker(config(broker.url, slots=4), [chat], account)
    task = await serve(worker)
    conn = await broker.next_worker()
    prompts = ["hello", "tell me a joke", "workers serve models", "imagine a cat"]
    expected = []
    for i, prompt in enumerate(prompts):  # one at a time first
        await conn.send(Work(guid=f"solo{i}", intent="chat", prompt=prompt, params={"temperature": 0, "max_tokens": 40}))
        expected.append((await conn.recv_until(f"solo{i}"))[-1].text)
    for i, prompt in enumerate(prompts):
        await conn.send(Work(guid=f"c{i}", intent="chat", prompt=prompt, params={"temperature": 0, "max_tokens": 40}))
    streams: dict[str, list[str]] = {f"c{i}": [] for i in range(len(prompts))}
    results: dict[str, WorkResult] = {}
    while len(results) < len(prompts):
        msg = await conn.recv(20)
        if isinstance(msg, Token):
            streams[msg.guid].append(msg.text)
        elif isinstance(msg, WorkResult):
            results[msg.guid] = msg
        else:
            raise AssertionError(f"unexpected {msg!r}")
    assert chat.engine is not None and chat.engine.max_rows_seen > 1
    for i in range(len(prompts)):
        assert results[f"c{i}"].text == expected[i]
        assert "".join(streams[f"c{i}"]) == expected[i]
    await shut(worker, task)
    assert chat.engine is None  # stop() closed the model


class OneAtATime(Backend):
    """A backend that takes a lock per job (an image model): one at a time."""

    intent = "draw"

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        return WorkResult(guid=work.guid, text="drawn")


async def test_default_slots_come_from_what_the_backends_can_batch(
    broker: BrokerSide, account: Any, tiny_chat_model: Path
) -> None:
    chat = ChatBackend(str(tiny_chat_model), Device.parse(None), max_batch=8)
    worker = Worker(config(broker.url), [chat, OneAtATime(None, Device.parse(None))], account)
    task = await serve(worker)
    conn = await broker.next_worker()
    # 8 chats batched plus one drawing at a time; each intent says its own bound.
    assert conn.register.slots == 9
    assert {c.intent: c.slots for c in conn.register.capabilities} == {"chat": 8, "draw": 1}
    await shut(worker, task)

    alone = Worker(config(broker.url), [EchoBackend(None, Device.parse(None))], account)
    task = await serve(alone)
    conn = await broker.next_worker()
    assert conn.register.slots == 32 and conn.register.capabilities[0].slots is None
    await shut(alone, task)

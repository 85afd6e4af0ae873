"""The happy path: handshake, submit, streamed tokens in order, result."""

from __future__ import annotations

from broker.protocol import Accepted, Result, Token
from tests.support.peers import FakeWorker, TestClient, echo


async def test_submit_streams_tokens_in_order_then_result(broker) -> None:
    worker = await FakeWorker(broker.url, intents=("chat",), behaviour=echo(delay_s=0.001)).start()
    async with TestClient(broker.url) as client:
        guid = await client.submit("one two three four five six", intent="chat")
        msgs = await client.collect(guid)
    await worker.close()
    assert isinstance(msgs[0], Accepted) and msgs[0].intent == "chat"
    tokens = [m for m in msgs if isinstance(m, Token)]
    assert "".join(t.text for t in tokens) == "one two three four five six"
    assert [t.index for t in tokens] == list(range(6))
    result = msgs[-1]
    assert isinstance(result, Result)
    assert result.text == "one two three four five six"
    assert result.worker == worker.worker_id
    assert result.replayed is False
    assert result.timings["run_s"] >= 0


async def test_progress_is_relayed_and_stream_false_sends_no_tokens(broker) -> None:
    from broker.protocol import Progress, WorkResult

    async def steps(w: FakeWorker, work) -> None:  # type: ignore[no-untyped-def]
        for step in range(1, 4):
            await w.send(Progress(guid=work.guid, step=step, total=3, message="denoising"))
            await w.send(Token(guid=work.guid, text=f"t{step}", index=step - 1))
        await w.send(WorkResult(guid=work.guid, text="t1t2t3"))

    worker = await FakeWorker(broker.url, intents=("imagine",), behaviour=steps).start()
    async with TestClient(broker.url) as client:
        streamed = await client.collect(await client.submit("a neon mountain", intent="imagine"))
        quiet = await client.collect(await client.submit("a neon mountain", intent="imagine", stream=False))
    assert [(m.step, m.total) for m in streamed if isinstance(m, Progress)] == [(1, 3), (2, 3), (3, 3)]
    assert [m.text for m in streamed if isinstance(m, Token)] == ["t1", "t2", "t3"]
    assert not any(isinstance(m, Token) for m in quiet)
    assert isinstance(quiet[-1], Result) and quiet[-1].text == "t1t2t3"
    assert worker.received[1].stream is False
    await worker.close()

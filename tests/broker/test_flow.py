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

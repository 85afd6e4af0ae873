"""A broker (or something posing as one) sending frames built to crash the worker.

The worker runs as its own process, so a crash is a dead process, not a dead
test session.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from broker.protocol import Work, WorkResult
from tests.support.realm import log_of, spawn_worker, stop_process
from tests.worker.broker_side import BrokerSide

DEEP = 50_000


async def test_a_deeply_nested_frame_is_ignored_and_the_worker_keeps_serving(tmp_path: Path) -> None:
    side = BrokerSide()
    await side.start()
    proc = spawn_worker(side.url, tmp_path / "w", "echo")
    try:
        conn = await side.next_worker(60)
        arrays = "[" * DEEP + "]" * DEEP
        for frame in (
            '{"type":"work","guid":"x","intent":"echo","params":{"a":' + arrays + "}}",
            '{"type":"ping","nonce":' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
            "[" * (4 * DEEP),
        ):
            await conn.ws.send_str(frame)
        guid = str(uuid.uuid4())
        await conn.send(Work(guid=guid, intent="echo", prompt="still here"))
        got = await conn.recv_until(guid)
        assert isinstance(got[-1], WorkResult) and got[-1].text == "still here"
        assert proc.poll() is None
    finally:
        code = stop_process(proc)
        await side.stop()
    assert code == 0, log_of(tmp_path / "w", "worker.log")[-3000:]

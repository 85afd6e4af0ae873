"""Workers that vanish, hang, fail or misbehave; cancels."""

from __future__ import annotations

import asyncio

from broker.protocol import Accepted, Error, Result
from tests.broker.conftest import get_json
from tests.support.peers import FakeWorker, TestClient, echo, fail, hang


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_worker_disconnect_mid_job_completes_once_elsewhere(broker) -> None:
    doomed = await FakeWorker(broker.url, behaviour=hang(), name="doomed").start()
    async with TestClient(broker.url) as client:
        guid = await client.submit("survive this", intent="chat")
        await asyncio.wait_for(doomed.got_work.wait(), 5)
        rescuer = await FakeWorker(broker.url, behaviour=echo(), name="rescuer").start()
        await doomed.close()
        msgs = await client.collect(guid)
        await asyncio.sleep(0.1)  # room for a (wrong) second result to arrive
        assert client.by_guid[guid].empty()
    results = [m for m in msgs if isinstance(m, Result)]
    assert len(results) == 1 and results[0].worker == rescuer.worker_id
    assert [w.guid for w in rescuer.received] == [guid]
    await rescuer.close()


async def test_timeout_requeues_then_fails_with_a_clear_error(make_broker) -> None:
    server = await make_broker(job_timeout_s={"chat": 0.2}, max_attempts=2, quarantine_after_failures=10)
    worker = await FakeWorker(server.url, behaviour=hang()).start()
    async with TestClient(server.url) as client:
        guid = await client.submit("too slow", intent="chat")
        msgs = await client.collect(guid, timeout=5)
    err = msgs[-1]
    assert isinstance(err, Error) and err.code == "timeout"
    assert "did not finish within 0.2 s" in err.message and "gave up after 2 attempts" in err.message
    assert [w.guid for w in worker.received] == [guid, guid]
    await wait_for(lambda: worker.cancels == [guid, guid])
    await worker.close()


async def test_retryable_failure_goes_to_another_worker(broker) -> None:
    # Registered first, so with equal load the flaky worker gets the job first.
    flaky = await FakeWorker(broker.url, behaviour=fail(retryable=True), name="flaky").start()
    steady = await FakeWorker(broker.url, behaviour=echo(), name="steady").start()
    async with TestClient(broker.url) as client:
        guid = await client.submit("try again", intent="chat")
        msgs = await client.collect(guid)
    assert [w.guid for w in flaky.received] == [guid]
    assert isinstance(msgs[-1], Result) and msgs[-1].worker == steady.worker_id
    await flaky.close()
    await steady.close()


async def test_non_retryable_failure_fails_at_once_with_the_workers_message(broker) -> None:
    worker = await FakeWorker(
        broker.url, behaviour=fail(retryable=False, code="bad_params", message="temperature must be <= 2")
    ).start()
    async with TestClient(broker.url) as client:
        msgs = await client.collect(await client.submit("hot", intent="chat"))
    err = msgs[-1]
    # The worker's bad-input code is the client's stable code.
    assert isinstance(err, Error) and err.code == "bad_params"
    assert err.message == "temperature must be <= 2" and err.detail["worker_code"] == "bad_params"
    assert len(worker.received) == 1
    await worker.close()


async def test_cancel_queued_and_running(broker) -> None:
    worker = await FakeWorker(broker.url, slots=1, behaviour=hang()).start()
    async with TestClient(broker.url) as client:
        running = await client.submit("running", intent="chat")
        queued = await client.submit("queued", intent="chat")
        assert isinstance(await client.next_for(running), Accepted)
        assert isinstance(await client.next_for(queued), Accepted)
        await client.send({"type": "cancel", "guid": queued})
        err = await client.next_for(queued)
        assert isinstance(err, Error) and err.code == "cancelled"
        await client.send({"type": "cancel", "guid": running})
        err = await client.next_for(running)
        assert isinstance(err, Error) and err.code == "cancelled"
        await wait_for(lambda: worker.cancels == [running])
        assert [w.guid for w in worker.received] == [running]
        # The slot comes back once the worker has let go of the cancelled job.
        worker.behaviour = echo()
        after = await client.ask("next please", intent="chat")
        assert isinstance(after, Result) and after.text == "next please"
        await client.send({"type": "cancel", "guid": "never-was"})
        err = await client.next_for("never-was")
        assert err.code == "unknown_guid"
    await worker.close()


async def test_quarantine_after_repeated_failures_then_probe_and_restore(make_broker) -> None:
    server = await make_broker(
        quarantine_after_failures=2, probe_after_s=0.3, heartbeat_s=0.05, max_attempts=5
    )
    worker = await FakeWorker(server.url, behaviour=fail(retryable=True)).start()
    async with TestClient(server.url) as client:
        guid = await client.submit("eventually", intent="chat")
        await wait_for(lambda: len(worker.received) == 2)
        listing = await get_json(server, "/v1/workers")
        health = listing["workers"][0]["health"]
        assert health["state"] == "quarantined" and health["consecutive_failures"] == 2
        # While the only worker is quarantined, new intents are refused at once.
        refused = await client.ask("anyone?", intent="chat")
        assert isinstance(refused, Error) and refused.code == "no_worker"
        worker.behaviour = echo()  # the worker recovers; the probe finds out
        msgs = await client.collect(guid, timeout=5)
        assert isinstance(msgs[-1], Result) and msgs[-1].text == "eventually"
    health = (await get_json(server, "/v1/workers"))["workers"][0]["health"]
    assert health["state"] == "healthy" and health["quarantines"] == 1 and health["jobs_ok"] == 1
    await worker.close()


async def test_a_worker_that_stops_answering_pings_is_dropped(make_broker) -> None:
    server = await make_broker(heartbeat_s=0.05, heartbeat_misses=2)
    silent = await FakeWorker(server.url, answer_pings=False).start()
    await asyncio.wait_for(silent.closed.wait(), 5)
    await wait_for(lambda: len(server.parts.registry) == 0)
    await silent.close()


async def test_heartbeat_latency_is_measured(make_broker) -> None:
    server = await make_broker(heartbeat_s=0.05)
    worker = await FakeWorker(server.url).start()
    await wait_for(lambda: next(iter(server.parts.registry)).health.latency_ms is not None)
    listing = await get_json(server, "/v1/workers")
    assert listing["workers"][0]["health"]["latency_ms"] >= 0
    await worker.close()

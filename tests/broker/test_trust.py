"""Worker trust: a worker that aborts jobs goes into maintenance and its jobs
complete elsewhere; new workers are limited; implausible speed and wrong
greedy answers (spot checks) are caught."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from broker.protocol import Error, Result, Token, Usage, WorkResult
from tests.broker.conftest import STORES, both_stores
from tests.broker.test_accounts import signed
from tests.support.peers import FakeWorker, TestClient, echo, fail, hang, new_account

store = pytest.fixture(params=STORES)(both_stores)  # the same accounts in SQLite and PostgreSQL


async def _maintenance_notice(worker: FakeWorker) -> Error:
    while True:
        msg = await worker.next_other()
        if isinstance(msg, Error) and msg.code == "maintenance":
            return msg


def _fail_together(n: int) -> Any:
    """Fail each job once ``n`` jobs have arrived (so each fails once, however
    long the broker takes to accept them)."""
    arrived = asyncio.Event()

    async def run(w: FakeWorker, work: Any) -> None:
        if len(w.received) >= n:
            arrived.set()
        await arrived.wait()
        await fail()(w, work)

    return run


async def test_a_worker_that_aborts_jobs_goes_into_maintenance_and_its_jobs_complete_elsewhere(make_broker) -> None:
    operator = new_account()
    # Health's own quarantine is pushed out of the way: this is about trust.
    server = await make_broker(operator=operator.address, maintenance_after=3, quarantine_after_failures=100)
    bad = await FakeWorker(server.url, slots=4, behaviour=_fail_together(3), name="bad").start()
    async with TestClient(server.url) as client:
        guids = [await client.submit(f"job {i}", intent="chat") for i in range(3)]
        await asyncio.wait_for(_wait_received(bad, 3), 5)
        notice = await asyncio.wait_for(_maintenance_notice(bad), 5)
        assert "3 of its last 3 jobs were aborted" in notice.message and "mtor sysop worker resume" in notice.hint

        good = await FakeWorker(server.url, slots=4, behaviour=echo(), name="good").start()
        results = [(await client.collect(g))[-1] for g in guids]
        assert all(isinstance(r, Result) and r.worker == good.worker_id for r in results)
        assert [r.text for r in results] == ["job 0", "job 1", "job 2"]

        before = len(bad.received)
        more = [(await client.ask(f"more {i}", intent="chat")) for i in range(4)]
        assert all(r.worker == good.worker_id for r in more) and len(bad.received) == before

        rows = {w["name"]: w["trust"] for w in (await signed(server, "GET", "/v1/sysop/workers", operator))["workers"]}
        assert rows["bad"]["state"] == "maintenance" and rows["bad"]["aborted"] >= 3
        assert rows["good"]["state"] == "active" and rows["good"]["completed"] == 7

        # Reconnecting does not escape maintenance: it is the address's.
        await bad.close()
        again = await FakeWorker(server.url, behaviour=echo(), account=bad.account, name="bad").start()
        assert "maintenance" in (await asyncio.wait_for(_maintenance_notice(again), 5)).message
        await good.close()
        guid = await client.submit("after", intent="chat")
        await asyncio.sleep(0.3)
        assert again.received == []
        await signed(server, "POST", "/v1/sysop/resume", operator, {"id": again.worker_id})
        assert (await client.collect(guid))[-1].worker == again.worker_id


async def _wait_received(worker: FakeWorker, n: int) -> None:
    while len(worker.received) < n:
        await asyncio.sleep(0.01)


async def test_a_new_worker_is_limited_until_trusted(make_broker) -> None:
    server = await make_broker(untrusted_slots=1, trust_after_jobs=3)
    worker = await FakeWorker(server.url, slots=4, behaviour=echo(delay_s=0.02)).start()
    async with TestClient(server.url) as client:
        first = [await client.submit(f"a b c {i}", intent="chat") for i in range(3)]
        for g in first:
            await client.collect(g)
        assert worker.max_running == 1  # untrusted: one at a time
        worker.max_running = 0
        rest = [await client.submit(f"a b c {i}", intent="chat") for i in range(4)]
        for g in rest:
            await client.collect(g)
        assert worker.max_running == 4  # trusted after 3 completed jobs


def _instant(tokens: int) -> object:
    async def run(w: FakeWorker, work: object) -> None:
        await w.send(Token(guid=work.guid, text="x", index=0))
        await w.send(WorkResult(guid=work.guid, text="x" * tokens, usage=Usage(completion_tokens=tokens)))

    return run


async def test_implausible_speed_puts_a_worker_into_maintenance(make_broker) -> None:
    server = await make_broker(max_tokens_per_s=1000.0)
    worker = await FakeWorker(server.url, behaviour=_instant(100_000)).start()
    async with TestClient(server.url) as client:
        await client.ask("fast", intent="chat")
        notice = await asyncio.wait_for(_maintenance_notice(worker), 5)
        assert "implausible speed: 100000 tokens" in notice.message
        guid = await client.submit("next", intent="chat")
        await asyncio.sleep(0.3)
        assert len(worker.received) == 1
        await client.send({"type": "cancel", "guid": guid})


async def test_a_worker_that_keeps_timing_out_is_caught_across_reconnects(make_broker) -> None:
    """Reconnecting does not wash a bad record away: the timeouts of every
    connection of the address count together."""
    server = await make_broker(
        maintenance_after=2, job_timeout_s={"chat": 0.3}, quarantine_after_failures=100, max_attempts=10
    )
    account = new_account()
    async with TestClient(server.url) as client:
        guids: list[str] = []
        for _ in range(2):  # take a job, sit on it until it times out, reconnect
            sitter = await FakeWorker(server.url, behaviour=hang(), account=account).start()
            guids = guids or [await client.submit(f"job {i}", intent="chat") for i in range(2)]
            await asyncio.wait_for(sitter.got_work.wait(), 5)
            await asyncio.wait_for(_until(lambda s=sitter: s.cancels), 5)  # timed out: cancel sent
            await sitter.send({"type": "drain"})  # leaves politely: only the timeouts count
            await sitter.close()
        again = await FakeWorker(server.url, behaviour=echo(), account=account).start()
        notice = await asyncio.wait_for(_maintenance_notice(again), 5)
        assert "2 of its last 2 jobs were aborted or timed out" in notice.message
        good = await FakeWorker(server.url, slots=2, behaviour=echo()).start()
        results = [(await client.collect(g))[-1] for g in guids]
        assert [r.worker for r in results] == [good.worker_id, good.worker_id] and again.received == []


async def test_a_worker_that_serves_then_vanishes_with_jobs_is_not_blamed_however_often(make_broker) -> None:
    """A worker that disconnects with jobs (kill -9, a lost network) after it
    served on that connection is not blamed, however often: its jobs run
    elsewhere and it gets work again."""
    operator = new_account()
    server = await make_broker(operator=operator.address, maintenance_after=2, max_attempts=10)
    account = new_account()
    echoing = echo()

    async def serve_warm_only(w: FakeWorker, work: Any) -> None:
        if work.prompt.startswith("warm"):
            await echoing(w, work)
        else:
            await asyncio.Event().wait()  # still running when the worker goes

    async with TestClient(server.url) as client:
        guids: list[str] = []
        for i in range(3):
            restarting = await FakeWorker(server.url, slots=4, behaviour=serve_warm_only, account=account,
                                          name="restarting").start()
            assert (await client.ask(f"warm {i}", intent="chat")).worker == restarting.worker_id
            guids = guids or [await client.submit(f"job {n}", intent="chat") for n in range(3)]
            await asyncio.wait_for(_until(lambda w=restarting: len(w.received) == 4), 5)
            await restarting.close()
        back = await FakeWorker(server.url, slots=3, behaviour=echo(), account=account, name="restarting").start()
        results = [(await client.collect(g))[-1] for g in guids]
        assert all(isinstance(r, Result) and r.worker == back.worker_id for r in results)
        assert not [e for e in back.errors if e.code == "maintenance"]
        rows = {w["name"]: w["trust"] for w in (await signed(server, "GET", "/v1/sysop/workers", operator))["workers"]}
        assert rows["restarting"]["state"] == "active" and rows["restarting"]["recent_aborted"] == 0
    await back.close()


async def test_a_worker_that_takes_work_and_vanishes_again_and_again_is_caught(make_broker) -> None:
    """Taking jobs and dropping them without ever finishing one is a pattern
    across reconnects: each such connection counts once."""
    server = await make_broker(maintenance_after=2, max_attempts=10)
    account = new_account()
    async with TestClient(server.url) as client:
        guids: list[str] = []
        for _ in range(2):  # take the jobs, vanish with them, come back
            dropper = await FakeWorker(server.url, slots=3, behaviour=hang(), account=account).start()
            guids = guids or [await client.submit(f"job {i}", intent="chat") for i in range(3)]
            await asyncio.wait_for(_until(lambda w=dropper: len(w.received) == 3), 5)
            await dropper.close()
        again = await FakeWorker(server.url, behaviour=echo(), account=account).start()
        notice = await asyncio.wait_for(_maintenance_notice(again), 5)
        assert "2 of its last 2 jobs were aborted" in notice.message  # two connections, not six jobs
        good = await FakeWorker(server.url, slots=3, behaviour=echo()).start()
        results = [(await client.collect(g))[-1] for g in guids]
        assert all(isinstance(r, Result) and r.worker == good.worker_id for r in results) and again.received == []
    await again.close()
    await good.close()


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def _liar(w: FakeWorker, work: Any) -> Any:
    return w.send(WorkResult(guid=work.guid, text="a confident wrong answer", usage=Usage(completion_tokens=4)))


def _echo_or_hold(w: FakeWorker, work: Any) -> Any:
    """Echo, except that a prompt starting with "hold" keeps its slot busy."""
    if work.prompt.startswith("hold"):
        return asyncio.Event().wait()
    return echo()(w, work)


async def test_spot_checks_rerun_greedy_chat_on_a_trusted_worker(make_broker) -> None:
    server = await make_broker(spot_check_rate=1.0, trust_after_jobs=2)
    honest = await FakeWorker(server.url, slots=3, behaviour=_echo_or_hold, name="honest").start()
    async with TestClient(server.url) as client:
        for i in range(2):  # the honest worker earns its trust
            await client.ask(f"warm up {i}", intent="chat")
        await client.submit("hold this slot", intent="chat")
        await asyncio.wait_for(_wait_received(honest, 3), 5)

        liar = await FakeWorker(server.url, behaviour=_liar, name="liar").start()
        # Least loaded (0/1 against 1/3): the liar answers, the user gets its answer...
        answer = await client.ask("what is two plus two", intent="chat", params={"temperature": 0})
        assert answer.worker == liar.worker_id and answer.text == "a confident wrong answer"
        # ...and the honest, trusted worker re-runs it unseen and disagrees.
        notice = await asyncio.wait_for(_maintenance_notice(liar), 5)
        assert "spot check failed" in notice.message and answer.guid in notice.message
        check = honest.received[-1]
        assert check.prompt == "what is two plus two" and check.params == {"temperature": 0} and not check.stream
        assert server.parts.trust.spot_checks == {"passed": 0, "failed": 1}

        # Sampled answers that are not greedy are never checked; honest answers pass.
        await client.ask("creative", intent="chat", params={"temperature": 0.7})
        assert len(honest.received) == 5 and honest.received[-1].prompt == "creative"
        await client.ask("same answer", intent="chat", params={"temperature": 0})
        assert server.parts.trust.spot_checks == {"passed": 0, "failed": 1}  # no second trusted worker to check honest


async def test_a_busy_worker_that_restarts_is_not_put_into_maintenance(make_broker) -> None:
    """kill -9 or a lost connection with every slot busy: the jobs run
    elsewhere and the worker, back under the same address, gets work again."""
    operator = new_account()
    server = await make_broker(operator=operator.address)  # maintenance_after: the default 5
    account = new_account()
    busy = await FakeWorker(server.url, slots=8, behaviour=hang(), account=account, name="busy").start()
    async with TestClient(server.url) as client:
        guids = [await client.submit(f"job {i}", intent="chat") for i in range(8)]
        await asyncio.wait_for(_wait_received(busy, 8), 5)
        await busy.close()  # gone with 8 running jobs
        back = await FakeWorker(server.url, slots=8, behaviour=echo(), account=account, name="busy").start()
        results = [(await client.collect(g))[-1] for g in guids]
        assert all(isinstance(r, Result) and r.worker == back.worker_id for r in results), results
        rows = {w["name"]: w["trust"] for w in (await signed(server, "GET", "/v1/sysop/workers", operator))["workers"]}
        assert rows["busy"]["state"] == "active"
        assert rows["busy"]["recent_aborted"] == 1  # one lost connection, not eight aborts
        assert not [e for e in back.errors if e.code == "maintenance"]
    await back.close()


async def test_a_worker_handing_back_while_draining_is_not_blamed_but_one_that_never_drained_is(make_broker) -> None:
    server = await make_broker(maintenance_after=2, quarantine_after_failures=2)

    async def hand_back(w: FakeWorker, work: Any) -> None:
        await w.send({"type": "failed", "guid": work.guid, "code": "worker_stopping", "message": "bye"})

    leaving = await FakeWorker(server.url, slots=4, behaviour=hang(), name="leaving").start()
    async with TestClient(server.url) as client:
        guids = [await client.submit(f"job {i}", intent="chat") for i in range(4)]
        await asyncio.wait_for(_wait_received(leaving, 4), 5)
        await leaving.send({"type": "drain"})
        for guid in guids:
            await hand_back(leaving, leaving.received[guids.index(guid)])
        other = await FakeWorker(server.url, slots=4, behaviour=echo()).start()
        results = [(await client.collect(g))[-1] for g in guids]
        assert all(isinstance(r, Result) and r.worker == other.worker_id for r in results)
        assert not [e for e in leaving.errors if e.code == "maintenance"]
        (row,) = [w for w in (await _workers(server)) if w["name"] == "leaving"]
        assert row["draining"] and row["health"]["jobs_failed"] == 0 and row["health"]["state"] == "healthy"
        # Without `drain` first, the same code is an ordinary failure: no dodging blame.
        await other.close()
        dodger = await FakeWorker(server.url, behaviour=hand_back, name="dodger").start()
        for i in range(2):
            await client.submit(f"dodge {i}", intent="chat")
        notice = await asyncio.wait_for(_maintenance_notice(dodger), 5)
        assert "aborted" in notice.message
    await leaving.close()
    await dodger.close()


async def _workers(server: Any) -> list[dict[str, Any]]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(server.http_url + "/v1/workers") as resp:
        return list((await resp.json())["workers"])


async def test_a_stalled_broker_does_not_blame_a_worker_that_answered_in_time(make_broker) -> None:
    """The worker answers at once, then the broker's loop stalls past the job's
    timeout before it reads the answer (a slow billing call, a busy machine):
    the answer counts, the intent is not run again and the worker is not blamed."""
    operator = new_account()
    server = await make_broker(operator=operator.address, job_timeout_s={"chat": 0.3}, maintenance_after=1)

    async def answer_then_stall(w: FakeWorker, work: Any) -> None:
        await w.send(WorkResult(guid=work.guid, text="on time", usage=Usage(completion_tokens=2)))
        time.sleep(0.6)  # blocks the one loop the broker runs on too

    worker = await FakeWorker(server.url, behaviour=answer_then_stall, name="prompt").start()
    async with TestClient(server.url) as client:
        result = (await client.collect(await client.submit("hello", intent="chat")))[-1]
        assert isinstance(result, Result) and result.text == "on time" and result.worker == worker.worker_id
        assert len(worker.received) == 1 and worker.cancels == []
        rows = {w["name"]: w["trust"] for w in (await signed(server, "GET", "/v1/sysop/workers", operator))["workers"]}
        assert rows["prompt"]["state"] == "active" and rows["prompt"]["aborted"] == 0
    await worker.close()

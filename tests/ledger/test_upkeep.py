"""The upkeep: survives any failure (logged, counted, retried with backoff, visible in the
journal), escrows welcome grants and expires holds off the broker's loop, idles at rest,
and runs as a process of its own that the broker restarts and wakes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from dataclasses import replace
from typing import Any

import pytest

from ledger import Ledger, LedgerConfig
from ledger import accounts as A
from ledger.units import ONE
from ledger.upkeep import STATUS_KEY, Upkeep, UpkeepProcess
from tests.ledger.conftest import hold, new_account, pay


def status(led: Ledger) -> dict[str, Any]:
    return json.loads(led.journal.meta(STATUS_KEY) or "{}")


def test_no_failure_stops_it_every_one_is_counted_and_retried_with_backoff(
    config: LedgerConfig, led: Ledger, payer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pay(led.billing(), payer, new_account(), "q1")
    upkeep = Upkeep(replace(config, epoch_seconds=0))
    try:
        real = upkeep.led.settler.close_epoch

        def locked(**kwargs: Any) -> Any:
            raise sqlite3.OperationalError("database is locked")  # what killed the old upkeep task

        monkeypatch.setattr(upkeep.led.settler, "close_epoch", locked)
        waits = [upkeep.step() for _ in range(3)]
        assert waits == [2.0, 4.0, 8.0]
        failing = status(led)
        assert failing["state"] == "failing" and failing["consecutive_failures"] == 3
        assert "database is locked" in failing["last_error"]
        monkeypatch.setattr(upkeep.led.settler, "close_epoch", real)
        upkeep.config.chain_rpc = upkeep.led.config.chain_rpc = "http://127.0.0.1:9"  # the chain goes away too
        assert upkeep.step() == 16.0
        assert "chain_unreachable" in status(led)["last_error"] or "cannot reach" in status(led)["last_error"]
        upkeep.config.chain_rpc = upkeep.led.config.chain_rpc = None  # and comes back
        assert upkeep.step() == 0.5
        ok = status(led)
        assert ok["state"] == "ok" and ok["failures"] == 4 and ok["settled_epochs"] == 1
    finally:
        upkeep.close()
    assert led.settler.pending() == [] and led.audit().clean


def test_welcome_grants_are_escrowed_by_the_upkeep_not_the_broker(config: LedgerConfig, led: Ledger) -> None:
    led.deploy()
    b = led.billing(welcome_grant=100 * ONE)
    newcomers = [new_account() for _ in range(3)]
    for i, user in enumerate(newcomers):
        hold(b, user, f"first-{i}", ONE)  # credited at once in the journal; no chain call here
    assert led.pending_grants() == {u.address: 100 * ONE for u in newcomers}
    upkeep = Upkeep(config)
    try:
        upkeep.step()
    finally:
        upkeep.close()
    assert led.pending_grants() == {}
    assert led.journal.balance(A.GRANTS) == 0
    with led.session() as s:
        for user in newcomers:
            assert s.ledger.functions.accountOf(user.address).call()[0] == 100 * ONE
    assert led.audit().clean


def test_holds_that_never_finished_come_back(config: LedgerConfig, led: Ledger, payer: Any) -> None:
    hold(led.billing(), payer, "lost", 5 * ONE)
    upkeep = Upkeep(replace(config, hold_ttl_s=0.05))
    try:
        time.sleep(0.1)
        upkeep.step()
    finally:
        upkeep.close()
    assert led.journal.open_holds() == {}
    assert led.journal.balance(A.user(payer.address)) == 100 * ONE


def test_at_rest_it_does_not_open_the_chain_and_sleeps_until_something_is_due(
    config: LedgerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = replace(config, epoch_seconds=600, exit_window_s=3600)
    led = Ledger(config)
    payer = new_account()
    led.faucet(payer)
    led.deposit(payer, ONE)
    upkeep = Upkeep(config)
    opened: list[float] = []
    real = upkeep.led._open_chain

    def counting() -> Any:
        opened.append(time.time())
        return real()

    monkeypatch.setattr(upkeep.led, "_open_chain", counting)
    try:
        upkeep.step()  # the first pass reads the chain once
        assert len(opened) == 1
        for _ in range(5):
            assert upkeep.step() == 600  # nothing to do: no chain, and a long sleep
        assert len(opened) == 1
        pay(led.billing(), payer, new_account(), "q1")
        wait = upkeep.step()
        assert wait is not None and 590 < wait <= 600  # until the epoch falls due
        assert len(opened) == 1
    finally:
        upkeep.close()
        led.close()


def test_with_a_short_exit_window_it_looks_often_enough_to_redeem_in_it(config: LedgerConfig) -> None:
    upkeep = Upkeep(replace(config, epoch_seconds=600, exit_window_s=9))
    try:
        upkeep.step()
        assert upkeep.step() == 3.0  # a third of the window: an exit booked elsewhere is seen in time
    finally:
        upkeep.close()


async def test_the_upkeep_process_is_woken_restarted_and_stopped(config: LedgerConfig, payer: Any) -> None:
    cfg = replace(config, epoch_queries=1, epoch_seconds=600)
    with Ledger(cfg) as led:
        b = led.billing()
        proc = UpkeepProcess(cfg)
        stop = asyncio.Event()
        runner = asyncio.create_task(proc.run(stop))

        async def settled(n: int) -> None:
            deadline = time.monotonic() + 60
            while len([e for e in led.settler.epochs() if e.state == "settled"]) < n:
                assert time.monotonic() < deadline, status(led)
                await asyncio.sleep(0.1)

        pay(b, payer, new_account(), "q1")
        proc.poke()
        await settled(1)
        first_pid = proc.status()["process_pid"]
        deadline = time.monotonic() + 10
        while status(led).get("pid") != first_pid:  # written just after the pass that settled
            assert time.monotonic() < deadline, status(led)
            await asyncio.sleep(0.05)
        os.kill(first_pid, signal.SIGKILL)  # it dies: the broker's side starts it again
        deadline = time.monotonic() + 30
        while proc.restarts == 0 or not proc.alive:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        pay(b, payer, new_account(), "q2")
        proc.poke()
        await settled(2)
        assert proc.status()["process_pid"] != first_pid
        stop.set()
        await asyncio.wait_for(runner, 30)
        assert not proc.alive
        assert led.audit().clean


def test_on_a_shared_journal_one_upkeep_works_and_another_takes_over_when_it_dies(
    config: LedgerConfig, pg_database: str
) -> None:
    """Several paid brokers, one PostgreSQL journal: one upkeep per broker, one at work."""
    from ledger.upkeep import STANDBY_S

    shared = replace(config, journal=pg_database)
    first, second = Upkeep(shared), Upkeep(shared)
    try:
        assert first._leads()
        assert second.step() == STANDBY_S  # stands by: no pass, no status of its own
        assert second.leading is False and second.led.journal.meta(STATUS_KEY) is None
        first.close()  # its broker died: its session, and the lead, go with it
        deadline = time.monotonic() + 10
        while not second._leads():
            assert time.monotonic() < deadline, "nobody took over"
            time.sleep(0.05)
        assert second.leading is True
    finally:
        second.close()

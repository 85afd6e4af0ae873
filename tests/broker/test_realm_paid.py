"""A paid realm of three brokers: one $9000 journal in PostgreSQL, one Redis,
the embedded py-evm chain, real `mtor broker serve --paid` and `mtor worker
serve` processes, clients paying through the SDK on different brokers.

The brokers run on one machine and so share one MTOR_HOME (the ledger
folder: keys, deployment.json, the embedded chain), as docs/scale.md says a
paid realm's brokers must.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker import protocol as p
from ledger import accounts as A
from ledger import open_journal
from mtor_cli.client import RealmClient, RealmError
from tests.broker.test_realm_faults import Brokers, ask_until_done, journal_states, realm_sees
from tests.support.peers import new_account
from tests.support.realm import (
    mtor_command,
    process_env,
    spawn,
    spawn_worker,
    stop_process,
    wait_until,
)

GRANT = 100 * 10**18  # a dev realm's welcome grant


class PaidBrokers(Brokers):
    """``count`` paid broker processes of one realm on one machine (one MTOR_HOME)."""

    def __init__(self, home: Path, engine: str, db: str, count: int) -> None:
        self.home = home
        deployed = self.mtor("chain", "deploy", "--json")  # once, before the brokers: none races to deploy
        assert deployed.returncode == 0, deployed.stderr
        super().__init__(home, engine, db, count, "--paid", shared_home=home)

    def mtor(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(mtor_command(*args), env=process_env(self.home), capture_output=True, text=True,
                              timeout=180)  # fmt: skip

    def logs(self) -> list[str]:
        return [self.log(i) for i in range(len(self.procs))]


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for proc in started:
        stop_process(proc, signal.SIGKILL)


def books_agree(db: str, answered: list[tuple[str, p.Result]], *, strict: bool) -> Counter[str]:
    """The journal against what the clients saw: each answered intent charged once
    (``strict``: every one; else at most once, see below) at the cost its client was
    told, nothing still held, each worker's earnings the sum of its captures, every
    payer's balance its grant less its charges. Returns the captures per worker."""
    journal = open_journal(db)
    try:
        captures = list(journal.kinds("capture"))
        per_guid = Counter(t.ref for t in captures)
        assert max(per_guid.values(), default=1) == 1, "an intent was charged twice"
        charged = {t.ref: t for t in captures}
        for _, result in answered:
            capture = charged.get(result.guid)
            if strict or capture is not None:
                assert capture is not None and capture.amount == result.cost > 0, result.guid
            else:  # taken over before its hold was committed: served, never charged
                assert result.cost == 0
        assert set(charged) <= {r.guid for _, r in answered}
        assert journal.open_holds() == {}, "a hold was neither captured, released nor expired"
        earned: Counter[str] = Counter()
        spent: Counter[str] = Counter()
        for t in captures:
            assert t.worker and t.payer and t.amount is not None and t.fee is not None
            earned[t.worker] += t.amount - t.fee
            spent[t.payer] += t.amount
        for worker, total in earned.items():
            assert journal.balance(A.worker(worker)) == total
        for payer, total in spent.items():
            assert journal.balance(A.user(payer)) == GRANT - total
        assert journal.unbalanced() == [] and journal.verify_chain()[0] == []
        assert journal.recompute_balances() == journal.balances()
        return Counter({w: sum(1 for t in captures if t.worker == w) for w in earned})
    finally:
        journal.close()


async def test_three_paid_brokers_bill_settle_and_audit_as_one_even_when_one_is_killed(
    tmp_path: Path, redis_server: Any, pg_database: str, processes: list[Any]
) -> None:
    realm = PaidBrokers(tmp_path / "realm", redis_server.url, pg_database, 3)
    try:
        for i in range(3):
            processes.append(spawn_worker(realm.rotated(i), tmp_path / f"worker{i}", "echo", None, "--slots", "4"))
        realm_sees(realm.urls[2], 3, 3)
        clients = [RealmClient(realm.rotated(i % 3), new_account(), reconnect_s=30) for i in range(6)]
        for client in clients:
            await client.connect()
        accepted: set[str] = set()

        async def lane(client: RealmClient, name: str, n: int, delay_s: float) -> list[tuple[str, p.Result]]:
            done = []
            for k in range(n):
                prompt = f"{name} ask {k} of {n}"
                done.append((prompt, await ask_until_done(client, prompt, accepted, params={"delay_s": delay_s})))
            return done

        # Steady: 6 users on 3 brokers, 36 paid intents.
        steady = await asyncio.wait_for(
            asyncio.gather(*(lane(c, f"steady{i}", 6, 0.0) for i, c in enumerate(clients))), 180
        )
        calm = [pair for done in steady for pair in done]
        assert [result.text for _, result in calm] == [prompt for prompt, _ in calm]
        served_by = books_agree(pg_database, calm, strict=True)
        assert sum(served_by.values()) == 36 and len(served_by) >= 2  # workers on several brokers earned

        # Under load, broker 0 dies (kill -9): its clients fail over, its intents are taken over.
        on_victim = [c for c in clients if c.url.startswith(realm.urls[0])]
        before = len(accepted)
        load = asyncio.gather(*(lane(c, f"load{i}.{j}", 8, 0.05) for i, c in enumerate(clients) for j in range(3)))
        deadline = asyncio.get_running_loop().time() + 60
        while len(accepted) < before + 30:  # well under way, intents in every state
            assert asyncio.get_running_loop().time() < deadline, "the load did not start"
            await asyncio.sleep(0.02)
        realm.procs[0].send_signal(signal.SIGKILL)
        stormy = [pair for done in await asyncio.wait_for(load, 180) for pair in done]
        for client in clients:
            await client.close()
    finally:
        realm.stop()
    assert len(stormy) == 144 and all(result.text == prompt for prompt, result in stormy)
    assert on_victim and all(c.reconnects >= 1 for c in on_victim)
    answered = calm + stormy
    assert len({result.guid for _, result in answered}) == 180
    states = journal_states(pg_database)
    assert all(states[guid] == "done" for guid in accepted)
    books_agree(pg_database, answered, strict=False)
    logs = realm.logs()
    assert sum("this upkeep leads the realm's ledger" in log for log in logs) >= 1
    assert sum("standing by" in log for log in logs) >= 1  # one leads, the others wait

    # Any machine of the realm settles and audits the one journal.
    settled = realm.mtor("ledger", "settle", "--db", pg_database, "--json")
    assert settled.returncode == 0, settled.stderr
    audit = realm.mtor("ledger", "audit", "--db", pg_database, "--json")
    report = json.loads(audit.stdout)
    assert audit.returncode == 0 and report["clean"], report["findings"]
    assert report["checked"]


def test_a_broker_with_other_contracts_than_the_journal_refuses_to_start(
    tmp_path: Path, redis_server: Any, pg_database: str
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for home in (first, second):  # two machines that each deployed their own contracts
        deployed = subprocess.run(mtor_command("chain", "deploy", "--json"), env=process_env(home),
                                  capture_output=True, text=True, timeout=180)  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
    args = ("broker", "serve", "--port", "0", "--engine", redis_server.url, "--db", pg_database, "--paid")
    broker = spawn(list(args), first, "broker.log")
    try:
        log = first / "broker.log"
        wait_until(lambda: "paid broker listening" in log.read_text(errors="replace"), 240, "the first paid broker")
        refused = subprocess.run(mtor_command(*args), env=process_env(second), capture_output=True, text=True,
                                 timeout=240)  # fmt: skip
    finally:
        stop_process(broker)
    assert refused.returncode == 1
    assert "[wrong_deployment]" in refused.stderr
    assert "share the ledger folder" in refused.stderr


async def test_postgres_down_under_paid_queries_is_a_retryable_error_and_charges_nothing_twice(
    tmp_path: Path, redis_server: Any, postgres_server: Any, pg_database: str, processes: list[Any]
) -> None:
    realm = PaidBrokers(tmp_path / "realm", redis_server.url, pg_database, 2)
    try:
        processes.append(spawn_worker(realm.rotated(1), tmp_path / "worker", "echo", None, "--slots", "2"))
        realm_sees(realm.urls[0], 2, 1)
        async with RealmClient(realm.rotated(0), new_account(), reconnect_s=30) as client:
            before = await client.ask("paid before the outage", intent="echo")
            await asyncio.to_thread(postgres_server.stop)
            refused_guid = uuid.uuid4().hex
            with pytest.raises(RealmError) as refused:
                await client.ask("not now", intent="echo", guid=refused_guid, timeout=20)
            assert refused.value.code == "unavailable" and refused.value.detail["retry_after"] > 0
            await asyncio.to_thread(postgres_server.start)
            again = await client.ask("not now", intent="echo", guid=refused_guid, timeout=60)
            after = await client.ask("paid after the outage", intent="echo")
    finally:
        realm.stop()
    assert again.text == "not now" and before.cost > 0 and again.cost > 0 and after.cost > 0
    answered = [("paid before the outage", before), ("not now", again), ("paid after the outage", after)]
    books_agree(pg_database, answered, strict=True)
    audit = realm.mtor("ledger", "audit", "--db", pg_database, "--json")
    assert audit.returncode == 0 and json.loads(audit.stdout)["clean"], audit.stdout

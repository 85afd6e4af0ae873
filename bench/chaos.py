"""Chaos: paid intents while workers are killed or stopped every second and the broker twice.

    python bench/chaos.py [--intents 1000] [--workers 4] [--clients 20] [--seed 1]

Everything runs as processes on 127.0.0.1: a paid broker (`mtor broker
serve --paid`: ledger.RealmBilling on the embedded dev chain; every new user
gets the chain's welcome grant), four echo workers
(`mtor worker serve --intent echo`), and in this process ``--clients``
RealmClients with reconnection on, sending ``--intents`` paid intents. Every
second one random worker is restarted, by SIGKILL and by SIGTERM (a graceful
stop: it drains) in turn; at a third and at two thirds of the intents the
broker is SIGKILLed and started again on the same journals. Every tenth intent is cancelled by its client once accepted
(it ends cancelled, its hold released, or done if it finished first).

It prints intents accepted, completed, failed (with codes), completed more than
once (captured more than once in the ledger), lost (accepted but never answered),
worker kills, and the ledger check: every completed intent charged exactly once,
every failed one released, no hold left open, every transaction balanced,
every balance equal to its entries summed again, `mtor ledger audit`
(journal against chain) clean, and no worker left in maintenance: restarts
are not misbehaviour. Exit status 1 when anything was lost, charged twice,
left open or put into maintenance.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.realm import (
    free_port,
    mtor_command,
    process_env,
    spawn_broker,
    spawn_worker,
    stop_process,
    url_for,
    wait_healthy,
    wait_workers,
)

RETRY_REJECTED = ("no_worker", "unknown_intent", "queue_full")  # refused before any hold was placed


# --- the broker -----------------------------------------------------------------


def spawn_paid_broker(port: int, db: Path, home: Path) -> Any:
    """`mtor broker serve --paid`: the realm's own billing (ledger.RealmBilling on the
    embedded dev chain; new users get its welcome grant), journals kept across restarts."""
    return spawn_broker(
        port, db, home, "--paid", "--heartbeat", "0.5", "--max-attempts", "20", "--job-timeout", "10",
    )


# --- the run --------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.accepted: set[str] = set()
        self.completed: Counter[str] = Counter()
        self.failed: dict[str, str] = {}
        self.lost: set[str] = set()
        self.retried_rejections = 0


async def client_loop(
    url: str, account: Any, guids: list[str], cancel: set[str], tally: Tally, in_flight: int
) -> None:
    from broker import protocol as p
    from mtor_cli.client import RealmClient, RealmError

    async with RealmClient(url, account, reconnect_s=120.0, connect_timeout=30.0) as client:
        sem = asyncio.Semaphore(in_flight)

        async def one(guid: str) -> None:
            async with sem:
                query = p.SubmitQuery(guid=guid, prompt="one two three four five", intent="echo",
                                      params={"delay_s": 0.03})
                while True:
                    try:
                        async for event in client.submit(query):
                            if isinstance(event, p.Accepted):
                                tally.accepted.add(guid)
                                if guid in cancel:
                                    await client.cancel(guid)  # ends cancelled (released) or done, never both
                            elif isinstance(event, p.Result):
                                tally.completed[guid] += 1
                            elif isinstance(event, p.Error):
                                tally.failed[guid] = event.code
                    except RealmError as exc:
                        tally.lost.add(guid)
                        tally.failed.setdefault(guid, exc.code)
                    if guid in tally.accepted or tally.failed.get(guid) not in RETRY_REJECTED:
                        return
                    # Refused before acceptance (every worker was down at that moment):
                    # what a person does is ask again a little later.
                    del tally.failed[guid]
                    tally.retried_rejections += 1
                    await asyncio.sleep(0.5)

        await asyncio.gather(*(one(g) for g in guids))


async def killer(url: str, workers: list[Any], homes: list[Path], rng: random.Random, stop: asyncio.Event,
                 kills: Counter[str]) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
            return
        except TimeoutError:
            pass
        i = rng.randrange(len(workers))
        graceful = kills["worker"] % 2 == 1
        workers[i].send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        await asyncio.to_thread(workers[i].wait)
        kills["worker"] += 1
        kills["worker stopped gracefully" if graceful else "worker killed"] += 1
        workers[i] = spawn_worker(url, homes[i], "echo")


def ledger_check(ledger_db: Path, journal_db: Path, tally: Tally) -> dict[str, Any]:
    import sqlite3

    from ledger import open_journal

    ledger = open_journal(ledger_db)
    captures: Counter[str] = Counter()
    releases: Counter[str] = Counter()
    for txn in ledger.all_txns():
        if txn.kind == "capture":
            captures[txn.ref] += 1
        elif txn.kind == "release":
            releases[txn.ref] += 1
    conn = sqlite3.connect(str(journal_db))
    states = dict(conn.execute("SELECT guid, state FROM intents"))
    conn.close()
    done = [g for g, s in states.items() if s == "done"]
    ended = [g for g, s in states.items() if s in ("failed", "cancelled")]
    report = {
        "done_charged_once": sum(1 for g in done if captures[g] == 1 and not releases[g]),
        "done": len(done),
        "failed_released": sum(1 for g in ended if releases[g] == 1 and not captures[g]),
        "failed": len(ended),
        "charged_more_than_once": sum(1 for n in captures.values() if n > 1),
        "open_holds": len(ledger.open_holds()),
        "unfinished_in_journal": sum(1 for s in states.values() if s == "queued"),
        "unbalanced_txns": len(ledger.unbalanced()),
        "balances_match_entries": ledger.balances() == ledger.recompute_balances(),
        "client_completed_but_not_done": sum(1 for g in tally.completed if states.get(g) != "done"),
    }
    ledger.close()
    return report


def in_maintenance(journal_db: Path) -> list[str]:
    """Worker addresses the broker holds in maintenance (broker.accounts' trust records)."""
    import sqlite3

    from broker.accounts import accounts_path

    conn = sqlite3.connect(str(accounts_path(journal_db)))
    try:
        return [f"{a}: {why}" for a, why in conn.execute("SELECT address, maintenance FROM trust WHERE maintenance IS NOT NULL")]
    finally:
        conn.close()


def ledger_audit(home: Path) -> dict[str, Any]:
    """`mtor ledger audit --json` on the broker's ledger: journal against chain."""
    import json
    import subprocess

    done = subprocess.run(
        mtor_command("ledger", "audit", "--json"), env=process_env(home), cwd=home,
        capture_output=True, text=True, timeout=300,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return {"clean": False, "summary": (done.stderr or done.stdout).strip()[-300:]}
    findings = report.get("findings", [])
    return {"clean": done.returncode == 0 and not findings,
            "summary": f"(checked {report.get('checked')}; {len(findings)} findings {findings[:3]})"}


async def run(args: argparse.Namespace, root: Path) -> int:
    from eth_account import Account

    port = free_port()
    url = url_for(port)
    db, ledger_db = root / "broker.db", root / "broker" / "data" / "ledger" / "journal.db"
    broker = spawn_paid_broker(port, db, root / "broker")
    homes = [root / f"worker{i}" for i in range(args.workers)]
    workers: list[Any] = []
    kills: Counter[str] = Counter()
    rng = random.Random(args.seed)
    try:
        wait_healthy(url)
        workers = [spawn_worker(url, h, "echo") for h in homes]
        await asyncio.to_thread(wait_workers, url, args.workers, "echo", 120)

        tally = Tally()
        guids = [f"chaos-{args.seed}-{i}" for i in range(args.intents)]
        accounts = [Account.create() for _ in range(args.clients)]
        shares = [guids[i :: args.clients] for i in range(args.clients)]
        stop = asyncio.Event()
        chaos = asyncio.create_task(killer(url, workers, homes, rng, stop, kills))
        t0 = time.perf_counter()
        cancel = set(guids[:: args.cancel_every]) if args.cancel_every else set()
        clients = asyncio.gather(*(client_loop(url, a, s, cancel, tally, 3) for a, s in zip(accounts, shares, strict=False)))
        task = asyncio.ensure_future(clients)
        for mark in (args.intents // 3, 2 * args.intents // 3):
            while len(tally.completed) + len(tally.failed) < mark and not task.done():
                await asyncio.sleep(0.05)
            print(f"  {time.perf_counter() - t0:.1f} s: {len(tally.completed)} completed; killing the broker",
                  file=sys.stderr, flush=True)
            broker.send_signal(signal.SIGKILL)
            broker.wait()
            kills["broker"] += 1
            await asyncio.sleep(0.5)
            broker = spawn_paid_broker(port, db, root / "broker")
            await asyncio.to_thread(wait_healthy, url, 60)  # a broker that cannot restart ends the run
        await task
        took = time.perf_counter() - t0
        stop.set()
        await chaos
        stop_process(broker)  # a clean stop commits the last pass before the check

        answered = set(tally.completed) | set(tally.failed)
        lost = (tally.accepted - answered) | tally.lost
        check = ledger_check(ledger_db, db, tally)
        audit = ledger_audit(root / "broker")
        maintenance = in_maintenance(db)
        print(f"chaos: {args.intents} paid intents, {args.clients} clients, {args.workers} echo workers, {took:.1f} s")
        print(f"  restarts: {kills['worker']} workers (one a second: {kills['worker killed']} SIGKILL, "
              f"{kills['worker stopped gracefully']} SIGTERM), {kills['broker']} broker (SIGKILL)")
        print(f"  accepted {len(tally.accepted)}, completed {len(tally.completed)}, "
              f"failed {len(tally.failed)} {dict(Counter(tally.failed.values()))}")
        print(f"  completed more than once: {sum(1 for n in tally.completed.values() if n > 1)} at the client, "
              f"{check['charged_more_than_once']} charged more than once in the ledger")
        print(f"  lost: {len(lost)}; refused before acceptance (no worker up) and asked again: "
              f"{tally.retried_rejections}")
        print(f"  ledger: {check['done_charged_once']}/{check['done']} completed charged exactly once; "
              f"{check['failed_released']}/{check['failed']} failed released; open holds {check['open_holds']}; "
              f"unbalanced txns {check['unbalanced_txns']}; balances match entries {check['balances_match_entries']}; "
              f"unfinished in journal {check['unfinished_in_journal']}")
        print(f"  mtor ledger audit: {'clean' if audit['clean'] else 'NOT CLEAN'} {audit['summary']}")
        print(f"  workers left in maintenance: {len(maintenance)}" + (f" {maintenance[:3]}" if maintenance else ""))
        if maintenance:  # what the broker held against them
            log = (root / "broker" / "broker.log").read_text(errors="replace").splitlines()
            for line in [x for x in log if "timed out on worker" in x or "failed intent" in x][-10:]:
                print(f"    {line[:200]}")
        clean = (
            not lost
            and check["charged_more_than_once"] == 0
            and check["done_charged_once"] == check["done"]
            and check["failed_released"] == check["failed"]
            and check["open_holds"] == 0
            and check["unbalanced_txns"] == 0
            and check["balances_match_entries"]
            and check["client_completed_but_not_done"] == 0
            and audit["clean"]
            and not maintenance
        )
        print(f"  verdict: {'CLEAN' if clean else 'NOT CLEAN'}")
        return 0 if clean else 1
    finally:
        for w in workers:
            stop_process(w, signal.SIGKILL)
        stop_process(broker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intents", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cancel-every", type=int, default=10, help="cancel every Nth intent once accepted (0: none)")
    parser.add_argument("--keep", type=Path, help="run in this (new) folder and keep the logs and databases")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True)
        os.environ["MTOR_HOME"] = str(args.keep / "client")
        raise SystemExit(asyncio.run(run(args, args.keep)))
    with tempfile.TemporaryDirectory(prefix="mtor-chaos-") as tmp:
        os.environ["MTOR_HOME"] = str(Path(tmp) / "client")
        raise SystemExit(asyncio.run(run(args, Path(tmp))))


if __name__ == "__main__":
    main()

"""Ledger benchmark: the cost of paying for a query, and the gas of settling an epoch.

1. Ledger cost per paid query (hold + capture through RealmBilling, journal in
   the broker's commit-once-per-loop-pass mode) against the baseline of a plain
   SQLite insert of one row per query under the same commit pattern.
   Target: <= 30 us per query, amortized.
2. Gas of one `settle` on the embedded chain for 1, 10, 100, 1000 payees
   (each payee: a worker credited for the first time, paid by its own payer),
   and gas for a fixed 10 payees as the epoch's query count grows 10 -> 100,000:
   settlement nets per address, so gas must not grow with queries.
   Target: <= 35k gas per payee.

Run: python bench/ledger.py [--queries 20000] [--payees 1,10,100,1000] [--chain hardhat|embedded]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ledger import Journal, Ledger, LedgerConfig, RealmBilling  # noqa: E402
from ledger import accounts as A  # noqa: E402
from ledger.units import ONE  # noqa: E402

PER_PASS = 50  # queries finishing in one event-loop pass of a busy broker


ROUNDS = 5  # baseline and ledger alternate; the best round of each counts (a shared, noisy machine)


class _PaidQueries:
    """hold + capture through RealmBilling on a journal in the broker's commit mode."""

    def __init__(self, path: Path) -> None:
        self.journal = Journal(path, commit="loop")
        self.users = [f"0x{i:040x}" for i in range(100)]
        for i, u in enumerate(self.users):
            self.journal.post("deposit", f"seed:{i}", ((A.ESCROW, -1000 * ONE), (A.user(u), 1000 * ONE)))
        self.billing = RealmBilling(self.journal)
        self.n = 0

    async def run(self, queries: int) -> float:
        billing, users = self.billing, self.users
        worker = "0x" + "ee" * 20
        usage = {"prompt_tokens": 20, "completion_tokens": 80}
        await asyncio.sleep(0)
        start = time.process_time()
        for _ in range(queries):
            n = self.n = self.n + 1
            user = users[n % len(users)]
            guid = f"q{n}"
            billing.hold(user, guid, billing.quote(user, "chat", None, {}))
            billing.capture(guid, worker, "chat", usage)
            if n % PER_PASS == 0:
                await asyncio.sleep(0)  # end of the pass: the journal commits here
        await asyncio.sleep(0)
        return (time.process_time() - start) / queries * 1e6


class _PlainInserts:
    """The baseline: one plain SQLite row per query, committed once per pass."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, guid TEXT, user TEXT, amount TEXT, time REAL)")
        self.n = 0

    async def run(self, queries: int) -> float:
        conn = self.conn
        start = time.process_time()
        conn.execute("BEGIN")
        for _ in range(queries):
            n = self.n = self.n + 1
            conn.execute("INSERT INTO q(guid, user, amount, time) VALUES (?, ?, ?, ?)", (f"q{n}", "0xabc", "1000", time.time()))
            if n % PER_PASS == 0:
                conn.execute("COMMIT")
                conn.execute("BEGIN")
        conn.execute("COMMIT")
        return (time.process_time() - start) / queries * 1e6


def bench_query_cost(queries: int) -> None:
    with tempfile.TemporaryDirectory() as d:

        async def both() -> tuple[list[float], list[float]]:
            base, paid = _PlainInserts(Path(d) / "base.db"), _PaidQueries(Path(d) / "journal.db")
            b, p = [], []
            for _ in range(ROUNDS):
                b.append(await base.run(queries // ROUNDS))
                p.append(await paid.run(queries // ROUNDS))
            return b, p

        base_runs, paid_runs = asyncio.run(both())
    base, paid = min(base_runs), min(paid_runs)
    print(f"1) ledger cost per paid query: {queries} queries in {ROUNDS} alternating rounds (best round shown),")
    print(f"   commit once per {PER_PASS}-query event-loop pass as the broker does")
    print(f"   baseline: plain SQLite insert of one row     {base:8.1f} us/query   (rounds: {_fmt(base_runs)})")
    print(f"   ledger:   hold + capture (2 txns, 5 entries)  {paid:8.1f} us/query   (rounds: {_fmt(paid_runs)})")
    print(f"   = {paid / base:.1f}x the baseline;  target <= 30 us: {'met' if paid <= 30 else 'MISSED'}")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def _fund(led: Ledger, payers: list[str], amount: int) -> None:
    """Escrow ``amount`` for each payer (the operator pays, through depositFor)."""
    with led.session() as s:
        op = s.operator
        total = amount * len(payers)
        s.chain.transact(op, s.token.functions.mint(op.address, total), what="mint")
        s.chain.transact(op, s.token.functions.approve(s.deployment.ledger, total), what="approve")
        for p in payers:
            s.chain.transact(op, s.ledger.functions.depositFor(p, amount), what="depositFor")
        led.sync(s)


def _settle_gas(led: Ledger) -> tuple[int, int]:
    """Close and settle the next epoch; returns (gas used, receipts)."""
    epoch = led.settler.close_epoch()
    assert epoch is not None
    with led.session() as s:
        settled = led.settler.submit(s, epoch)
        rc = s.chain.w3.eth.get_transaction_receipt(settled.tx_hash)
    return int(rc["gasUsed"]), epoch.receipts


def _pay(billing: RealmBilling, payer: str, worker: str, guid: str) -> None:
    billing.hold(payer, guid, ONE // 100)
    billing.capture(guid, worker, "echo", {})


def bench_settle_gas(payee_counts: list[int], query_counts: list[int], chain: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        if chain == "hardhat":
            from tests.support.hardhat import HardhatNode

            with HardhatNode(Path(d)) as node:
                led = Ledger(LedgerConfig(Path(d), chain_rpc=node.url, welcome_grant=0))
                led.deploy()
                _gas_tables(led, payee_counts, query_counts, f"hardhat node {node.url}")
                led.close()
        else:
            led = Ledger(LedgerConfig(Path(d), welcome_grant=0))
            _gas_tables(led, payee_counts, query_counts, "embedded py-evm chain")
            led.close()


def _gas_tables(led: Ledger, payee_counts: list[int], query_counts: list[int], where: str) -> None:
    print(f"\n2) gas of one settle transaction ({where}, cancun)")
    print("   each payee: a worker credited for the first time, paid by a payer of its own")
    print(f"   {'payees':>7} {'queries':>8} {'gas':>11} {'gas/payee':>10} {'marginal/payee':>15}")
    biggest = max(payee_counts)
    payers = [_addr(0xA0, i) for i in range(biggest)]
    _fund(led, payers, 10_000 * ONE)
    billing = led.billing()
    used = 0
    first: tuple[int, int] | None = None
    worst_marginal = 0.0
    for n in payee_counts:
        workers = [_addr(0xB0, used + i) for i in range(n)]
        used += n
        for i in range(n):
            _pay(billing, payers[i], workers[i], f"p{n}-{i}")
        gas, receipts = _settle_gas(led)
        marginal = ""
        if first is not None and n > first[0]:
            per = (gas - first[1]) / (n - first[0])
            worst_marginal = max(worst_marginal, per)
            marginal = f"{per:,.0f}"
        else:
            first = (n, gas)
        print(f"   {n:>7} {receipts:>8} {gas:>11,} {gas / n:>10,.0f} {marginal:>15}")
    print(f"   worst marginal gas per payee {worst_marginal:,.0f}: target <= 35,000 "
          f"{'met' if worst_marginal <= 35_000 else 'MISSED'} (the fixed part is the epoch: tx, root, fee)")

    print(f"\n   {'payees':>7} {'queries':>8} {'gas':>11}   the same 10 payees, more and more queries per epoch")
    workers = [_addr(0xC0, i) for i in range(10)]
    for i in range(10):  # first credits out of the way: every row below is like for like
        _pay(billing, payers[i], workers[i], f"warm-{i}")
    _settle_gas(led)
    gases = []
    for q in query_counts:
        for k in range(q):
            _pay(billing, payers[k % 10], workers[k % 10], f"q{q}-{k}")
        gas, receipts = _settle_gas(led)
        gases.append(gas)
        print(f"   {10:>7} {receipts:>8,} {gas:>11,}")
    spread = max(gases) - min(gases)
    verdict = "does not grow with queries" if spread <= 0.01 * min(gases) else "GROWS with queries"
    print(f"   gas spread across query counts: {spread:,} gas ({spread / min(gases):.2%}): {verdict}")
    report = led.audit()
    print(f"   audit after the benchmark: {'clean' if report.clean else report.as_dict()['findings'][:3]}")


def _addr(prefix: int, i: int) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(f"0x{prefix << 152 | i:040x}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=20000, help="paid queries for the per-query cost")
    ap.add_argument("--payees", default="1,10,100,1000", help="payee counts for the settle gas")
    ap.add_argument("--epoch-queries", default="10,1000,100000", help="query counts for the fixed-payee rows")
    ap.add_argument(
        "--chain",
        choices=("hardhat", "embedded"),
        default="hardhat" if (REPO / "node_modules" / ".bin" / "hardhat").exists() else "embedded",
        help="where to measure gas (same EVM rules, same gas; hardhat runs big epochs much faster)",
    )
    args = ap.parse_args()
    bench_query_cost(args.queries)
    bench_settle_gas(
        [int(x) for x in args.payees.split(",")], [int(x) for x in args.epoch_queries.split(",")], args.chain
    )


if __name__ == "__main__":
    main()

"""Ledger benchmark: what paying for a query costs the realm, and what settling costs in gas.

1. Ledger CPU per paid query: hold (with the payer's signed cumulative
   authorisation, as the SDK sends it) + capture through RealmBilling, journal
   in the broker's commit-once-per-loop-pass mode; signatures checked as the
   realm does (lazily: a payer's first, then whenever what it presented
   unverified passes 1 $9000), and as an extra row checking every one.
   Baseline: a plain SQLite insert of one row per query, same commit pattern.
   Goal: <= 30 us per query. The same queries on the PostgreSQL journal (a
   realm of paid brokers; a throwaway server started here): this process's CPU,
   the server's CPU, and the wall time per query, batched as above and one query
   per pass (the longest a lone paid query holds the broker's loop), beside the
   SQLite journal's from the same run.
2. Settle gas for 1, 10, 100, 1,000 and 10,000 payers and workers (payer i pays
   worker i), two epochs (first and returning payers), against today's
   contract (v1: debits and credits in one `settle`, 31.5k per payee; its
   artifact is kept in bench/data) and a plain ERC-20 transfer per query.
   Goals: the worker part (the `settle` that posts the earnings root) flat and
   <= 80k gas; <= 12k gas per returning payer (one `redeem` entry); every
   transaction under the realm's 15M gas cap (the largest of the 10,000-payer
   epoch is printed).
3. Claim gas in trees of 1,000 and 10,000 workers, first and returning: goal <= 70k.
4. `mtor ledger audit` time for 100,000 receipts (journal checks + chain checks).
5. The upkeep process at rest (embedded chain, nothing to settle): its CPU over
   30 s. Goal (issue 22): <= 0.1% of a core.

Run: python bench/ledger.py [--queries 20000] [--payers 1,10,100,1000,10000] [--audit-receipts 100000]
     [--idle-seconds 30] [--chain hardhat|embedded] [--no-chain]
     (hardhat: a `hardhat node` on a free port, killed by pid at the end; --no-chain: only 1 and 5)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ledger import Ledger, LedgerConfig, RealmBilling, open_journal  # noqa: E402
from ledger import accounts as A  # noqa: E402
from ledger import authorisation as auth  # noqa: E402
from ledger.chain import GAS_CAP  # noqa: E402
from ledger.units import ONE  # noqa: E402

PER_PASS = 50  # queries finishing in one event-loop pass of a busy broker
ROUNDS = 5  # baseline and ledger alternate; the best round of each counts (a shared, noisy machine)
TERMS = auth.Terms(31337, "0x" + "5f" * 20)
USAGE = {"prompt_tokens": 20, "completion_tokens": 80}
QUERY_COST = ONE // 1000  # 100 tokens at 0.01 $9000 per 1k


# --- 1. CPU per paid query ----------------------------------------------------------------


class _PaidQueries:
    """hold (signed) + capture through RealmBilling on a journal in the broker's commit mode."""

    def __init__(self, path: Path | str, queries: int, every_signature: bool) -> None:
        from eth_account import Account

        self.journal = open_journal(path, commit="loop")
        self.users = [Account.create() for _ in range(100)]
        for i, u in enumerate(self.users):
            self.journal.post("deposit", f"seed:{i}", ((A.ESCROW, -1000 * ONE), (A.user(u.address), 1000 * ONE)))
        self.billing = RealmBilling(self.journal, terms=lambda: TERMS, unverified_limit=0 if every_signature else ONE)
        self.price = self.billing.quote("", "chat", None, {})
        # what the SDK sends with each query, signed before the clock starts (client CPU, not the ledger's)
        committed = {u.address: 0 for u in self.users}
        self.signed = []
        for n in range(queries):
            u = self.users[n % len(self.users)]
            total = committed[u.address] + self.price
            self.signed.append((u.address, SimpleNamespace(total=total, signature=auth.sign(u.key, TERMS, u.address, total))))
            committed[u.address] += QUERY_COST
        self.n = 0

    async def run(self, queries: int, per_pass: int = PER_PASS) -> float:
        return (await self.timed(queries, per_pass))[0]

    async def timed(self, queries: int, per_pass: int = PER_PASS) -> tuple[float, float]:
        """(CPU, wall) microseconds per query of this process."""
        billing, worker = self.billing, "0x" + "ee" * 20
        await asyncio.sleep(0)
        start, wall = time.process_time(), time.perf_counter()
        for _ in range(queries):
            user, signed = self.signed[self.n]
            guid = f"q{self.n}"
            self.n += 1
            billing.hold(user, guid, self.price, signed)
            billing.capture(guid, worker, "chat", USAGE)
            if self.n % per_pass == 0:
                await asyncio.sleep(0)  # end of the pass: the journal commits here
        await asyncio.sleep(0)
        return (time.process_time() - start) / queries * 1e6, (time.perf_counter() - wall) / queries * 1e6


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
    print(f"1) ledger CPU per paid query: {queries} queries in {ROUNDS} alternating rounds (best round shown),")
    print(f"   100 payers, commit once per {PER_PASS}-query event-loop pass as the broker does")
    with tempfile.TemporaryDirectory() as d:

        async def all_three() -> tuple[list[float], list[float], list[float]]:
            per = queries // ROUNDS
            base = _PlainInserts(Path(d) / "base.db")
            lazy = _PaidQueries(Path(d) / "lazy.db", queries, every_signature=False)
            every = _PaidQueries(Path(d) / "every.db", queries, every_signature=True)
            b, p, e = [], [], []
            for _ in range(ROUNDS):
                b.append(await base.run(per))
                p.append(await lazy.run(per))
                e.append(await every.run(per))
            return b, p, e

        base_runs, lazy_runs, every_runs = asyncio.run(all_three())
    base, lazy, every = min(base_runs), min(lazy_runs), min(every_runs)
    print(f"   baseline: plain SQLite insert of one row           {base:8.1f} us/query   (rounds: {_fmt(base_runs)})")
    print(f"   ledger, signatures checked lazily (the default)    {lazy:8.1f} us/query   (rounds: {_fmt(lazy_runs)})")
    print(f"   ledger, every signature checked (extra row)        {every:8.1f} us/query   (rounds: {_fmt(every_runs)})")
    print(f"   = {lazy / base:.1f}x the baseline;  goal <= 30 us: {'met' if lazy <= 30 else 'MISSED'}")


def bench_query_backends(queries: int) -> None:
    """The same paid queries on the SQLite and the PostgreSQL journal, alternating rounds."""
    import os

    from tests.support.engines import PostgresServer

    def server_cpu(pid: int) -> float:
        """CPU seconds of the PostgreSQL server: the postmaster and its backends."""
        total = 0.0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(entry) == pid or int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    per = max(PER_PASS, queries // ROUNDS // PER_PASS * PER_PASS)
    lone = max(10, per // 10)
    print(f"\n1b) the same paid queries on each journal backend: {ROUNDS} alternating rounds of {per} (best shown);")
    print(f"    batched: {PER_PASS} queries per loop pass; lone: one query per pass ({lone} per round)")
    try:
        server = PostgresServer().start()
    except (RuntimeError, OSError, AssertionError) as exc:
        print(f"    PostgreSQL row skipped: {exc}")
        return
    try:
        from broker.migrations import migrate_postgres

        url = server.create_database()
        asyncio.run(migrate_postgres(url))
        with tempfile.TemporaryDirectory() as d:

            async def rounds() -> dict[str, list[tuple[float, float, float, float]]]:
                journals = {
                    "SQLite": _PaidQueries(Path(d) / "j.db", (per + lone) * ROUNDS, every_signature=False),
                    "PostgreSQL": _PaidQueries(url, (per + lone) * ROUNDS, every_signature=False),
                }
                out: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in journals}
                for _ in range(ROUNDS):
                    for name, paid in journals.items():
                        s0 = server_cpu(server.pid)
                        cpu, wall = await paid.timed(per)
                        srv = (server_cpu(server.pid) - s0) / per * 1e6
                        _, lone_wall = await paid.timed(lone, per_pass=1)
                        out[name].append((cpu, srv, wall, lone_wall))
                for paid in journals.values():
                    paid.journal.close()
                return out

            results = asyncio.run(rounds())
    finally:
        server.close()
    print(f"    {'journal':<11} {'CPU here':>9} {'server CPU':>11} {'wall batched':>13} {'wall lone':>10}   us/query")
    best: dict[str, tuple[float, float, float, float]] = {}
    for name, rows in results.items():
        best[name] = tuple(min(r[i] for r in rows) for i in range(4))  # type: ignore[assignment]
        cpu, srv, wall, lone_wall = best[name]
        print(f"    {name:<11} {cpu:>9.1f} {srv:>11.1f} {wall:>13.1f} {lone_wall:>10.1f}")
    sq, pg = best["SQLite"], best["PostgreSQL"]
    print(f"    PostgreSQL / SQLite: CPU here {pg[0] / sq[0]:.2f}x, CPU here + server {(pg[0] + pg[1]) / sq[0]:.2f}x, "
          f"wall batched {pg[2] / sq[2]:.2f}x, wall lone {pg[3] / sq[3]:.2f}x (server CPU: 10 ms clock ticks)")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


# --- 2-4. gas and audit on a chain ---------------------------------------------------------


@contextmanager
def chain_config(chain: str, d: Path) -> Any:
    if chain == "hardhat":
        from tests.support.hardhat import HardhatNode

        with HardhatNode(d) as node:
            yield LedgerConfig(d, chain_rpc=node.url, welcome_grant=0), f"hardhat node {node.url}"
    else:
        yield LedgerConfig(d, welcome_grant=0), "embedded py-evm chain"


def _addr(prefix: int, i: int) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(f"0x{prefix << 152 | i:040x}")


def _fund(led: Ledger, s: Any, addresses: list[str], amount: int) -> None:
    """Escrow ``amount`` for each address, the owner paying (batched deposits)."""
    owner = led.owner_key
    total = amount * len(addresses)
    s.chain.transact(owner, s.token.functions.mint(owner.address, total), what="mint")
    s.chain.transact(owner, s.token.functions.approve(s.deployment.ledger, total), what="approve")
    for i in range(0, len(addresses), 400):
        batch = addresses[i : i + 400]
        s.chain.transact(owner, s.ledger.functions.depositForMany(batch, [amount] * len(batch)), what="fund")


class _Payers:
    """Payers with keys: each signs one large cumulative authorisation (a client may
    authorise a budget ahead; the realm redeems only what it charged)."""

    def __init__(self, n: int, terms: auth.Terms) -> None:
        from eth_account import Account

        self.accounts = [Account.create() for _ in range(n)]
        budget = 50 * ONE
        self.signed = {
            a.address: SimpleNamespace(total=budget, signature=auth.sign(a.key, terms, a.address, budget))
            for a in self.accounts
        }

    def addresses(self) -> list[str]:
        return [a.address for a in self.accounts]


def _pay(billing: RealmBilling, payers: _Payers, payer: str, worker: str, guid: str) -> None:
    billing.hold(payer, guid, ONE // 100, payers.signed[payer])
    billing.capture(guid, worker, "echo", {})


def _txs_gas(s: Any, from_block: int) -> list[tuple[str, int]]:
    """(function, gas) of every transaction to the ledger since ``from_block``."""
    w3 = s.chain.w3
    out = []
    for n in range(from_block, s.chain.head() + 1):
        for tx in w3.eth.get_block(n, full_transactions=True)["transactions"]:
            if tx["to"] == s.deployment.ledger:
                fn = s.ledger.get_function_by_selector(tx["input"][:4]).fn_name
                out.append((fn, int(w3.eth.get_transaction_receipt(tx["hash"])["gasUsed"])))
    return out


def _settle_epoch(led: Ledger, s: Any) -> list[tuple[str, int]]:
    start = s.chain.head() + 1
    epoch = led.settler.close_epoch(force=True)
    assert epoch is not None
    led.settler.send(s, epoch)
    return _txs_gas(s, start)


def _v1_settle_gas(s: Any, led: Ledger, n: int) -> int | None:
    """Today's contract: one `settle` debiting n payers and crediting n workers (first time)."""
    art = json.loads((REPO / "bench" / "data" / "RealmLedger.v1.json").read_text())
    w3, owner = s.chain.w3, led.owner_key
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    rc = s.chain.transact(owner, factory.constructor(s.deployment.token, owner.address), what="deploying v1")
    v1 = w3.eth.contract(address=rc["contractAddress"], abi=art["abi"])
    payers = [_addr(0xD0, n * 100_000 + i) for i in range(n)]
    total = ONE // 100 * n
    s.chain.transact(owner, s.token.functions.mint(owner.address, total), what="mint")
    s.chain.transact(owner, s.token.functions.approve(v1.address, total), what="approve")
    for p in payers:
        s.chain.transact(owner, v1.functions.depositFor(p, ONE // 100), what="v1 deposit")
    debits = [(ONE // 100 << 160) | int(p, 16) for p in sorted(payers)]
    workers = sorted(_addr(0xD1, n * 100_000 + i) for i in range(n))
    fee = ONE // 1000 * n
    credits = [((ONE // 100 - ONE // 1000) << 160) | int(w, 16) for w in workers]
    fn = v1.functions.settle(1, b"\x11" * 32, n, debits, credits, fee)
    try:
        gas = int(fn.estimate_gas({"from": owner.address}))
    except Exception:  # over the block's gas limit: it cannot be sent at all
        return None
    return gas


def bench_settle_gas(payer_counts: list[int], chain: str, audit_receipts: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, chain_config(chain, Path(tmp)) as (config, where):
        led = Ledger(replace(config, epoch_queries=10**9))
        led.deploy()
        terms = led.terms()
        assert terms is not None
        billing = led.billing()
        print(f"\n2) settle gas per epoch ({where}, cancun); payer i pays worker i, one query each")
        print(f"   {'payers':>7} | {'v1 settle':>12} {'v1/payee':>9} | {'ERC-20/query':>12} | "
              f"{'v2 settle':>10} {'redeem/payer':>13} {'returning':>10} {'marginal':>9} | {'largest tx':>11} {'txs':>4}")
        worst_settle, worst_returning, biggest, biggest_n = 0, 0.0, 0, 0
        smallest: tuple[int, int] | None = None  # (payers, returning redeem gas) of the first row
        claims: list[tuple[int, int, int]] = []
        with led.session() as s:
            erc20 = _erc20_transfer_gas(led, s)
        used = 0
        for n in payer_counts:
            payers = _Payers(n, terms)
            workers = [_addr(0xB0, used + i) for i in range(n)]
            used += n
            with led.session() as s:
                _fund(led, s, payers.addresses(), ONE)
                led.sync(s)
            rounds = []
            for r in range(2):  # first epoch, then the same payers returning
                for i, (p, w) in enumerate(zip(payers.addresses(), workers, strict=True)):
                    _pay(billing, payers, p, w, f"n{n}-r{r}-{i}")
                with led.session() as s:
                    rounds.append(_settle_epoch(led, s))
            first, second = rounds
            settle_gas = next(g for f, g in second if f == "settle")
            redeem_first = sum(g for f, g in first if f == "redeem")
            redeem_returning = sum(g for f, g in second if f == "redeem")
            largest = max(g for f, g in first + second)
            txs = len(second)
            with led.session() as s:
                v1 = _v1_settle_gas(s, led, n) if n <= 1000 else None
            v1_text = f"{v1:>12,} {v1 / n:>9,.0f}" if v1 is not None else f"{'over block':>12} {'-':>9}"
            marginal = ""
            if smallest is None:
                smallest = (n, redeem_returning)
            elif n > smallest[0]:
                per = (redeem_returning - smallest[1]) / (n - smallest[0])
                worst_returning = max(worst_returning, per)
                marginal = f"{per:,.0f}"
            print(f"   {n:>7,} | {v1_text} | {erc20 * n:>12,} | {settle_gas:>10,} {redeem_first / n:>13,.0f} "
                  f"{redeem_returning / n:>10,.0f} {marginal:>9} | {largest:>11,} {txs:>4}")
            worst_settle = max(worst_settle, settle_gas)
            if n >= biggest_n:
                biggest, biggest_n = largest, n
            if n >= 1000 or n == max(payer_counts):
                claims.append(claim_gas(led))
        print(f"   v1: today's contract, one transaction per epoch (10,000 payees would need ~{10_000 * 31_600:,} gas:"
              " over any block); ERC-20/query: a plain token transfer per paid query, no escrow at all")
        print(f"   worker part (v2 settle): <= {worst_settle:,} gas whatever the workers; goal <= 80,000: "
              f"{'met' if worst_settle <= 80_000 else 'MISSED'}")
        print(f"   payer part: {worst_returning:,.0f} gas per returning payer (marginal: one more `redeem` entry, in"
              f" batches of <= 15M gas); goal <= 12,000: {'met' if worst_returning <= 12_000 else 'MISSED'}")
        print(f"   largest single transaction of the {biggest_n:,}-payer epoch: {biggest:,} gas; "
              f"under the {GAS_CAP:,} cap: {'met' if biggest <= GAS_CAP else 'MISSED'}")
        print("\n3) claim gas: a worker's own transaction, when it chooses (returning: after an earlier claim)")
        for size, first, returning in claims:
            print(f"   tree of {size:>6,} workers: first claim {first:,} gas, returning {returning:,} gas")
        worst_claim = max(r for _, _, r in claims)
        print(f"   goal <= 70,000 for a returning claim: {'met' if worst_claim <= 70_000 else 'MISSED'}"
              " (a first claim also pays for new storage: the worker's claimed total and token balance)")
        if audit_receipts:
            bench_audit(led, audit_receipts, terms)
        led.close()


def _erc20_transfer_gas(led: Ledger, s: Any) -> int:
    owner = led.owner_key
    s.chain.transact(owner, s.token.functions.mint(owner.address, ONE), what="mint")
    rc = s.chain.transact(owner, s.token.functions.transfer(_addr(0xE0, 1), ONE // 100), what="a transfer")
    return int(rc["gasUsed"])


def claim_gas(led: Ledger) -> tuple[int, int, int]:
    """(workers in the tree, first claim gas, returning claim gas) of a new worker
    that earns, claims, earns again and claims again."""
    from eth_account import Account

    from ledger import wallet as W

    terms = led.terms()
    assert terms is not None
    worker = Account.create()
    payers = _Payers(1, terms)
    with led.session() as s:
        _fund(led, s, payers.addresses(), ONE)
        led.sync(s)
    billing = led.billing()
    gas = []
    for round_ in range(2):
        _pay(billing, payers, payers.addresses()[0], worker.address, f"claim-{worker.address}-{round_}")
        with led.session() as s:
            _settle_epoch(led, s)
            gas.append(W.claim(s, worker, worker.address, *_leaf(led, worker.address))["gas"])
    settled = led.settler.last_settled()
    assert settled is not None
    return len(led.settler.earnings_of(settled.number)), gas[0], gas[1]


def _leaf(led: Ledger, address: str) -> tuple[int, list[bytes]]:
    p = led.proof(address)
    return int(p["cumulative"]), [bytes.fromhex(x[2:]) for x in p["proof"]]


def bench_audit(led: Ledger, receipts: int, terms: Any) -> None:
    print(f"\n4) mtor ledger audit with {receipts:,} receipts (100 payers, 100 workers, epochs of 10,000)")
    payers = _Payers(100, terms)
    with led.session() as s:
        _fund(led, s, payers.addresses(), 10 * ONE * receipts // 100 // 100 + ONE)
        led.sync(s)
    billing = led.billing()
    addresses = payers.addresses()
    workers = [_addr(0xF0, i) for i in range(100)]
    for i in range(receipts):
        _pay(billing, payers, addresses[i % 100], workers[i % 100], f"a{i}")
    led.settler.epoch_queries = 10_000
    with led.session() as s:
        while led.settler.close_epoch(force=True) is not None:
            pass
        led.settler.settle(s)
    total_rows = led.journal.last_txn_id()
    start = time.perf_counter()
    report = led.audit()
    took = time.perf_counter() - start
    print(f"   audit: {took:.1f} s for {total_rows:,} journal rows, {report.checked['receipts']:,} receipts, "
          f"{report.checked['epochs_settled']} epochs: {'clean' if report.clean else report.as_dict()['findings'][:3]}")


def bench_idle(seconds: float) -> None:
    import os

    from ledger.upkeep import UpkeepProcess

    def cpu(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def measure(config: LedgerConfig) -> tuple[float, float]:
        proc, stop = UpkeepProcess(config), asyncio.Event()
        task = asyncio.create_task(proc.run(stop))
        with Ledger(config) as led:
            while not led.journal.meta("upkeep"):  # its first pass (it reads the chain once)
                await asyncio.sleep(0.2)
        pid = proc.status()["process_pid"]
        c0, t0 = cpu(pid), time.perf_counter()
        await asyncio.sleep(seconds)
        used, took = cpu(pid) - c0, time.perf_counter() - t0
        stop.set()
        await task
        return used, took

    with tempfile.TemporaryDirectory() as d:
        config = LedgerConfig(Path(d))
        with Ledger(config) as led:
            led.deploy()
        used, took = asyncio.run(measure(config))
    share = used / took * 100
    print(f"\n5) the upkeep process at rest (embedded chain, nothing to settle): {used:.2f} s of CPU in {took:.0f} s"
          f" = {share:.3f}% of a core (clock ticks of 10 ms); goal <= 0.1%: {'met' if share <= 0.1 else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=20000, help="paid queries for the per-query cost")
    ap.add_argument("--payers", default="1,10,100,1000,10000", help="payer (and worker) counts for the settle gas")
    ap.add_argument("--audit-receipts", type=int, default=100_000, help="receipts for the audit time (0: skip)")
    ap.add_argument("--idle-seconds", type=float, default=30.0, help="how long to watch the upkeep at rest (0: skip)")
    ap.add_argument("--no-chain", action="store_true", help="skip the gas and audit figures (2-4)")
    ap.add_argument(
        "--chain",
        choices=("hardhat", "embedded"),
        default="hardhat" if (REPO / "node_modules" / ".bin" / "hardhat").exists() else "embedded",
        help="where to measure gas (same EVM rules, same gas; hardhat runs big epochs much faster)",
    )
    args = ap.parse_args()
    bench_query_cost(args.queries)
    bench_query_backends(args.queries)
    if not args.no_chain:
        bench_settle_gas([int(x) for x in args.payers.split(",")], args.chain, args.audit_receipts)
    if args.idle_seconds:
        bench_idle(args.idle_seconds)


if __name__ == "__main__":
    main()

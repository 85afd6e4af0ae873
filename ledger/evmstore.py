"""The embedded dev chain, persisted: py-evm over a SQLite key-value table.

eth-tester's in-memory chain is lost on exit; a realm must not forget
balances when it restarts. py-evm keeps everything (headers, blocks, receipts,
state trie nodes) in one key-value database, so giving it a SQLite-backed one
is enough. Writes stay in an open SQLite transaction that is committed once a
block is mined, so a crash can never leave half a block on disk.

One process at a time may open the chain: :func:`open_embedded` takes an
exclusive lock on ``<file>.lock`` and waits for it.
"""

from __future__ import annotations

import fcntl
import sqlite3
import time
from pathlib import Path
from typing import Any

from ledger.errors import ChainError

EMBEDDED_CHAIN_ID = 131277322940537  # eth-tester's chain id
# Mainnet's block gas limit; the realm keeps each transaction under its own cap (15M).
EMBEDDED_GAS_LIMIT = 30_000_000


def _base_db_class() -> type:
    from eth.db.backends.base import BaseDB

    class SqliteKV(BaseDB):
        """py-evm's key-value database on one SQLite table."""

        def __init__(self, path: Path) -> None:
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
            )
            self._in_tx = False

        def _begin(self) -> None:
            if not self._in_tx:
                self._conn.execute("BEGIN")
                self._in_tx = True

        def __getitem__(self, key: bytes) -> bytes:
            row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(key)
            return bytes(row[0])

        def __setitem__(self, key: bytes, value: bytes) -> None:
            self._begin()
            self._conn.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)", (key, value))

        def __delitem__(self, key: bytes) -> None:
            self._begin()
            if self._conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount == 0:
                raise KeyError(key)

        def _exists(self, key: bytes) -> bool:
            return self._conn.execute("SELECT 1 FROM kv WHERE key = ?", (key,)).fetchone() is not None

        def commit(self) -> None:
            if self._in_tx:
                self._conn.execute("COMMIT")
                self._in_tx = False

        def rollback(self) -> None:
            if self._in_tx:
                self._conn.execute("ROLLBACK")
                self._in_tx = False

        def close(self) -> None:
            self.rollback()
            self._conn.close()

    return SqliteKV


def _one_run_gas(state: Any, transaction: Any) -> int:
    """Gas to give a transaction, from one run at the block's gas limit.

    py-evm estimates by bisection: ~20 runs of the transaction, which for a
    batch of a thousand redemptions is most of the upkeep's CPU. One run tells
    what it uses; 1/63 more covers what EIP-150 keeps back from calls it makes.
    """
    from eth.vm.spoof import SpoofTransaction

    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0))
        if computation.is_error:
            raise computation.error
        used = state.gas_limit - computation.get_gas_remaining()
    finally:
        state.revert(snapshot)
    return min(state.gas_limit, used + used // 63 + 2_000)


def _backend_class() -> type:
    from eth_tester import PyEVMBackend

    class PersistentPyEVMBackend(PyEVMBackend):
        """eth-tester's py-evm backend whose chain lives in a SqliteKV."""

        def __init__(self, store: Any) -> None:
            self._store = store
            super().__init__()  # builds a throwaway in-memory chain: we only want its class
            self._attach(store)

        def _attach(self, store: Any) -> None:
            from eth.db.atomic import AtomicDB
            from eth.db.chain import ChainDB
            from eth.exceptions import CanonicalHeadNotFound
            from eth_tester.backends.pyevm.main import (
                generate_genesis_state_for_keys,
                get_default_genesis_params,
            )

            chain_class: Any = type(self.chain)  # type: ignore[has-type]  # set by PyEVMBackend.__init__
            db = AtomicDB(store)
            try:
                ChainDB(db).get_canonical_head()
                self.chain = chain_class(db)
            except CanonicalHeadNotFound:
                params = get_default_genesis_params({"gas_limit": EMBEDDED_GAS_LIMIT})
                state = dict(generate_genesis_state_for_keys(self.account_keys))
                self.chain = chain_class.from_genesis(db, params, state)
            self.chain.gas_estimator = _one_run_gas
            store.commit()

        def mine_blocks(self, num_blocks: int = 1, coinbase: Any = b"\x00" * 20) -> tuple[bytes, ...]:
            try:
                hashes = tuple(super().mine_blocks(num_blocks, coinbase))
            except BaseException:
                self._store.rollback()
                raise
            self._store.commit()
            return hashes

    return PersistentPyEVMBackend


class EmbeddedChain:
    """An open embedded chain: a web3 instance over the persisted py-evm chain."""

    def __init__(self, path: Path, lock_timeout_s: float = 60.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = open(path.with_suffix(path.suffix + ".lock"), "a+")
        deadline = time.monotonic() + lock_timeout_s
        while True:
            try:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lock.close()
                    raise ChainError(
                        "chain_busy",
                        f"the embedded chain {path} is held by another process",
                        "wait for it to finish, or stop the other mtor process",
                    ) from None
                time.sleep(0.02)
        try:
            from eth_tester import EthereumTester
            from web3 import EthereumTesterProvider, Web3

            self.store = _base_db_class()(path)
            self.backend = _backend_class()(self.store)
            self.tester = EthereumTester(backend=self.backend)
            self.w3 = Web3(EthereumTesterProvider(self.tester))
        except BaseException:
            self._lock.close()
            raise

    def mine(self, blocks: int = 1) -> None:
        self.tester.mine_blocks(blocks)

    def time_travel(self, seconds: int) -> None:
        """Mine a block ``seconds`` after the latest one (exit windows in tests and demos)."""
        latest = int(self.w3.eth.get_block("latest")["timestamp"])
        # eth-tester mines the block one second before the time it is given
        self.tester.time_travel(latest + seconds + 1)

    def close(self) -> None:
        self.store.close()
        self._lock.close()

"""A paid realm in a thread: a broker charging through the ledger, with its money desk
(the /v1/realm, /v1/wallet, /v1/ledger/* routes) and echo workers of known keys.

    realm = PaidRealm(LedgerConfig(home / "data"), home)
    mtor("wallet", "--broker", realm.realm.url)
    realm.close()

No upkeep process runs: a test settles with ``realm.ledger.settle()`` (or `mtor
ledger settle`), as the upkeep would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from broker.billing import InsufficientFunds, PaymentRefused
from ledger import Ledger, LedgerConfig
from ledger.desk import MoneyDesk
from mtor_cli.client import RealmClient
from tests.support.realm import ThreadRealm
from worker.backends.base import Device
from worker.backends.echo import EchoBackend


class PaidRealm:
    """A broker charging through RealmBilling, with ``workers`` echo workers of known keys."""

    def __init__(self, config: LedgerConfig, home: Path, workers: int = 1) -> None:
        self.config = config
        self.ledger = Ledger(config, commit="loop")
        if self.ledger.deployment() is None:
            self.ledger.deploy()  # what the realm's upkeep does first on a new embedded chain
        self.billing = self.ledger.billing(
            insufficient_funds=InsufficientFunds, refused=PaymentRefused, welcome_grant=config.welcome_grant
        )
        self.realm = ThreadRealm(home / "broker.db", billing=self.billing, money=lambda: MoneyDesk(config)).start()
        self.worker_keys = [home / f"worker-key-{i}.json" for i in range(workers)]
        self.worker_key = self.worker_keys[0]
        self.workers = [self.realm.add_worker([EchoBackend(None, Device())], key_path=key) for key in self.worker_keys]
        self.worker = self.workers[0]
        self.realm.wait_workers(workers, "echo")

    def ask(self, account: Any, prompt: str, **params: Any) -> Any:
        async def go() -> Any:
            async with RealmClient(self.realm.url, account) as client:
                return await client.ask(prompt, intent="echo", params=params)

        return asyncio.run(go())

    def close(self) -> None:
        self.realm.stop()
        self.ledger.close()

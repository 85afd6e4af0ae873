"""A paid realm in a thread: a broker charging through the ledger, with its money desk
(the /v1/wallet routes) and one echo worker of known key.

    realm = PaidRealm(LedgerConfig(home / "data"), home)
    mtor("wallet", "--broker", realm.realm.url)
    realm.close()
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from broker.billing import InsufficientFunds
from ledger import Ledger, LedgerConfig
from ledger.desk import MoneyDesk
from mtor_cli.client import RealmClient
from tests.support.realm import ThreadRealm
from worker.backends.base import Device
from worker.backends.echo import EchoBackend


class PaidRealm:
    """A broker charging through RealmBilling, with one echo worker of known key."""

    def __init__(self, config: LedgerConfig, home: Path) -> None:
        self.config = config
        self.ledger = Ledger(config, commit="loop")
        billing = self.ledger.billing(insufficient_funds=InsufficientFunds, on_new_user=self.ledger.welcome)
        self.realm = ThreadRealm(home / "broker.db", billing=billing, money=lambda: MoneyDesk(config)).start()
        self.worker_key = home / "worker-key.json"
        self.worker = self.realm.add_worker([EchoBackend(None, Device())], key_path=self.worker_key)
        self.realm.wait_workers(1, "echo")

    def ask(self, account: Any, prompt: str, **params: Any) -> Any:
        async def go() -> Any:
            async with RealmClient(self.realm.url, account) as client:
                return await client.ask(prompt, intent="echo", params=params)

        return asyncio.run(go())

    def close(self) -> None:
        self.realm.stop()
        self.ledger.close()

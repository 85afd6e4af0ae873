"""What the federation's pieces share: the realm's key, its stores, and the broker parts they use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker.config import BrokerConfig
from broker.federation.envelope import Opener
from broker.federation.keys import RealmKey
from broker.federation.store import FederationStore
from broker.federation.tally import Tallies

if TYPE_CHECKING:
    from broker.billing import Billing
    from broker.dispatch import Dispatcher
    from broker.outbox import Outbox
    from broker.queue import JobQueue
    from broker.registry import WorkerRegistry
    from broker.subscriptions import Subscriptions


@dataclass
class Context:
    config: BrokerConfig
    key: RealmKey
    opener: Opener
    store: FederationStore
    tallies: Tallies
    registry: WorkerRegistry
    dispatcher: Dispatcher
    queue: JobQueue
    outbox: Outbox
    subs: Subscriptions
    billing: Billing | None
    realms: set[str] = field(default_factory=set)  # every pinned peer's address
    _dirty: bool = False

    def dirty(self) -> None:
        """The store was written: the federation's next tick commits it (before
        it sends the receipts and acknowledgements that depend on it)."""
        self._dirty = True

    def commit(self) -> None:
        if self._dirty:
            self._dirty = False
            self.store.commit()

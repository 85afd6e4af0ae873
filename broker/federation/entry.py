"""A peer realm as this realm's registry sees it: one worker serving its whole pool.

Its capabilities are the union of the peer's local workers' (updated live
from the peer's ``pool`` frames), and its slots are what the peer said it
takes from this realm now (free slots plus room in its queue). Local workers
always come first: its health ranks below every local worker's, so an intent
goes to the peer only when no local worker can serve it or every one is busy.
An intent that came from a peer realm never goes to one (no second hop, no
loop). Its health outlives a reconnect, so a peer quarantined for failing or
timing out stays quarantined when it comes back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.config import BrokerConfig
from broker.health import WorkerHealth
from broker.protocol import Capability, Failed, Pool
from broker.registry import WorkerEntry

if TYPE_CHECKING:
    from broker.jobs import Job
    from broker.peer import Peer

# Answers of a peer that mean "not now" rather than "I failed": the intent
# goes elsewhere at once and nobody is blamed (like a draining worker's).
NOT_NOW = frozenset({"queue_full", "no_worker", "unknown_intent", "rate_limited", "worker_stopping"})


class PeerHealth(WorkerHealth):
    def rank(self) -> tuple[int, int]:
        state, failures = super().rank()
        return 2 + state, failures  # after every local worker, healthy (0) or probing (1)

    def quarantine(self) -> None:
        """Quarantine now (a receipt failed this realm's audit)."""
        self._quarantine()


class PeerEntry(WorkerEntry):
    remote = True

    def __init__(
        self,
        worker_id: str,
        peer: Peer,
        payee: str,
        realm: str,
        name: str,
        config: BrokerConfig,
        health: PeerHealth,
        realms: set[str],
        describe: Any,
    ) -> None:
        """``payee``: this realm's own address (work a peer does is booked to the
        realm, which pays the peer); ``realm``: the peer's address; ``realms``:
        every peer realm's address (their intents never go to a peer);
        ``describe()``: the federation details /v1/workers shows."""
        super().__init__(worker_id, peer, payee, [], 1, name, "", config)
        self._owner_only = frozenset(config.owner_only_intents)
        self.health = health
        self.realm = realm
        self._realms = realms
        self._describe = describe
        self.cap = 0  # nothing until the peer's first pool

    def apply(self, pool: Pool) -> None:
        """The peer's latest pool: what it serves, and how many more intents it takes now."""
        self.capabilities = list(pool.capabilities)
        self.models = {c.intent: frozenset(c.models) for c in pool.capabilities}
        # Intents that act on the asker's own accounts never go to another realm.
        self.owner_only = self._owner_only | {c.intent for c in pool.capabilities if c.owner_only}
        self.intent_slots = None
        busy = len(self.running) + len(self.letting_go)
        self.cap = busy + max(0, pool.room)
        self.slots = max(1, self.cap)

    def saturated(self) -> None:
        """The peer refused for lack of room: no more until its next pool."""
        self.cap = len(self.running) + len(self.letting_go)

    def accepts(self, job: Job) -> bool:
        return job.user not in self._realms

    def hands_back(self, failed: Failed) -> bool:
        return failed.retryable and failed.code in NOT_NOW

    def to_dict(self, private: bool = False) -> dict[str, object]:
        row = super().to_dict(private)
        row["federation"] = self._describe()
        return row


def union(capabilities: list[list[Capability]]) -> list[Capability]:
    """One capability per intent: every model any worker serves for it."""
    merged: dict[str, tuple[Capability, set[str]]] = {}
    for caps in capabilities:
        for c in caps:
            if c.intent not in merged:
                merged[c.intent] = (c, set())
            merged[c.intent][1].update(c.models)
    return [
        Capability(intent=intent, models=sorted(models), params=first.params, info=first.info)
        for intent, (first, models) in sorted(merged.items())
    ]

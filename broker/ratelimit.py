"""Per-user limits on `submit_query`: requests per minute and live intents.

A sliding one-minute window of accepted request times per user, and the
user's live guids (pruned against the dispatcher's live jobs, so nothing has
to tell this module when an intent ends). A refused request gets
``error{code: "rate_limited", retry_after}`` and the connection stays open.
A resubmitted guid (a reconnecting client collecting its result) is never
limited. In a realm of brokers, broker.engine.limits.SharedLimits keeps the
same limits in Redis, for the user across every broker.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Container
from typing import TYPE_CHECKING, Protocol

from broker.config import BrokerConfig
from broker.protocol import Error, SubmitQuery

if TYPE_CHECKING:
    from broker.peer import Peer

WINDOW_S = 60.0


class Limits(Protocol):
    async def allow(self, peer: Peer, query: SubmitQuery) -> bool:
        """True to pass the query on; False after answering `rate_limited`."""
        ...


class RateLimits:
    def __init__(self, config: BrokerConfig, live: Container[str]) -> None:
        """``live``: the guids queued or running now (the dispatcher's jobs)."""
        self._cfg = config
        self._jobs = live
        self._recent: dict[str, deque[float]] = {}
        self._live: dict[str, set[str]] = {}

    async def allow(self, peer: Peer, query: SubmitQuery) -> bool:
        """True to pass the query on; False after answering `rate_limited`."""
        cfg = self._cfg
        if not (cfg.rate_per_minute or cfg.max_concurrent):
            return True
        user = peer.address
        assert user is not None
        jobs = self._jobs
        if query.guid in jobs:
            return True
        now = time.monotonic()
        if cfg.max_concurrent:
            live = self._live.setdefault(user, set())
            live = self._live[user] = {guid for guid in live if guid in jobs}
            if len(live) >= cfg.max_concurrent:
                too_many(peer, query, len(live), cfg.max_concurrent)
                return False
        if cfg.rate_per_minute:
            recent = self._recent.setdefault(user, deque())
            while recent and now - recent[0] >= WINDOW_S:
                recent.popleft()
            if len(recent) >= cfg.rate_per_minute:
                too_often(peer, query, cfg.rate_per_minute, WINDOW_S - (now - recent[0]))
                return False
            recent.append(now)
        if cfg.max_concurrent:
            self._live[user].add(query.guid)
        return True



def too_many(peer: Peer, query: SubmitQuery, live: int, limit: int) -> None:
    _refuse(peer, query, f"you have {live} intents queued or running; the limit is {limit}",
            1.0, "wait for one to finish", limit=limit)  # fmt: skip


def too_often(peer: Peer, query: SubmitQuery, limit: int, wait: float) -> None:
    _refuse(peer, query, f"more than {limit} requests in a minute", wait, f"retry in {math.ceil(wait)} s", limit=limit)


def _refuse(peer: Peer, query: SubmitQuery, message: str, wait: float, hint: str, **detail: object) -> None:
    retry_after = round(max(wait, 0.001), 3)
    peer.send(
        Error(
            code="rate_limited",
            message=message,
            hint=hint,
            guid=query.guid,
            detail={**detail, "retry_after": retry_after},
            retry_after=retry_after,
        )
    )

"""Per-user submit limits for the whole realm (broker.ratelimit.Limits), in Redis.

The same two limits as broker.ratelimit.RateLimits, counted across every
broker: requests in the last minute (a sorted set of their times, Redis's
clock) and live intents (the user's set of queued or running guids, which the
queue keeps). A resubmitted guid that is still live is never limited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.engine.link import Link
from broker.protocol import Unavailable
from broker.ratelimit import WINDOW_S, too_many, too_often

if TYPE_CHECKING:
    from broker.config import BrokerConfig
    from broker.peer import Peer
    from broker.protocol import SubmitQuery


class SharedLimits:
    def __init__(self, config: BrokerConfig, link: Link) -> None:
        self._cfg = config
        self._link = link

    async def allow(self, peer: Peer, query: SubmitQuery) -> bool:
        cfg = self._cfg
        if not (cfg.rate_per_minute or cfg.max_concurrent):
            return True
        try:
            reply = await self._link.call(
                {"op": "limit", "u": peer.address, "g": query.guid, "rate": cfg.rate_per_minute,
                 "concurrent": cfg.max_concurrent, "window": WINDOW_S}
            )  # fmt: skip
        except Unavailable as exc:
            peer.send(exc.to_error(query.guid))
            return False
        refused = reply.result.get("refuse")
        if refused == "concurrent":
            too_many(peer, query, int(reply.result["live"]), cfg.max_concurrent)
            return False
        if refused == "rate":
            too_often(peer, query, cfg.rate_per_minute, float(reply.result["wait"]))
            return False
        return True

"""Heartbeats: ping every worker, drop the silent ones, move quarantined ones to probing."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from broker.protocol import Ping

if TYPE_CHECKING:
    from broker.registry import WorkerRegistry
    from broker.subscriptions import Subscriptions

SILENT_CLOSE = 4002


class Heartbeat:
    def __init__(
        self, misses: int, registry: WorkerRegistry, subs: Subscriptions, pump: Callable[[], None]
    ) -> None:
        """``misses``: unanswered pings before a worker counts as gone; ``pump``
        hands queued work to free slots (a probing worker has one)."""
        self._misses = misses
        self._registry = registry
        self._subs = subs
        self._pump = pump
        self._closing: set[asyncio.Task[None]] = set()  # strong refs: a bare task may be collected mid-close

    def beat(self) -> None:
        now = time.monotonic()
        for worker in self._registry:
            health = worker.health
            if health.pings_unanswered >= self._misses:
                # Silent for too long: treat as gone, its jobs go elsewhere.
                task = asyncio.create_task(worker.peer.close(code=SILENT_CLOSE, message=b"heartbeat missed"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
                continue
            nonce = secrets.token_hex(4)
            worker.ping_sent = {nonce: time.perf_counter()}
            health.pings_unanswered += 1
            worker.peer.send(Ping(nonce=nonce, ts=time.time()))
            if health.maybe_probe(now):
                self._subs.changed("workers")
                self._pump()

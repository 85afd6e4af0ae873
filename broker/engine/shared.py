"""SharedRealm: what makes one broker a member of a realm of brokers.

It owns the link to Redis, this broker's view of the realm, and three
background duties:

- the beat (every ``engine_beat_s``): this broker's presence and description
  and its workers go to Redis, everyone else's come back; a broker that
  stopped beating for ``engine_dead_s`` is reaped (its running intents go to
  the front of the queue for any broker to take);
- the inbox: frames for this broker's clients from other brokers' workers, and
  requests (pull, end an intent, a client moved, realm notices);
- the reconcile (every ``RECONCILE_S``, one broker at a time): unfinished
  intents in the journal that Redis has no job for (Redis lost its last writes,
  or a broker died between journaling and queueing) are queued again.

When Redis comes back without its data (a new epoch), this broker first puts
back what it knows (its running jobs, its workers) and the reconcile restores
the rest from the journal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from broker.engine.limits import SharedLimits
from broker.engine.link import Link, items
from broker.engine.queue import SharedQueue, running_here
from broker.engine.remote import RemotePeer
from broker.engine.state import RealmState
from broker.jobs import Ending
from broker.protocol import Unavailable, encode

if TYPE_CHECKING:
    from broker.config import BrokerConfig
    from broker.outbox import Outbox
    from broker.queue import Host
    from broker.registry import WorkerEntry, WorkerRegistry

log = logging.getLogger("mtor.broker")

RECONCILE_S = 30.0


class SharedRealm:
    def __init__(self, config: BrokerConfig, report: Callable[[str], None]) -> None:
        assert config.engine is not None
        self.id = "b" + secrets.token_hex(4)
        self._cfg = config
        self._report = report
        self.link = Link(config.engine, config.realm, self.id, report)
        self.state = RealmState(self.id)
        self.queue: SharedQueue | None = None
        self._epoch = secrets.token_hex(8)  # offered to a Redis that has none yet
        self._known_epoch: str | None = None
        self._published: set[str] = set()  # worker ids this broker wrote to Redis
        self._tasks: list[asyncio.Task[None]] = []
        self._notices: dict[str, Callable[[bytes], None]] = {}
        self._host: Host | None = None
        self._registry: WorkerRegistry | None = None
        self._describe: Callable[[], dict[str, Any]] = lambda: {"id": self.id}
        self._restore: Callable[[], Awaitable[int]] | None = None
        self._changed: Callable[[], None] = lambda: None
        self._trust: Callable[[WorkerEntry], dict[str, object]] = lambda worker: {}
        self.started = time.time()

    async def connect(self) -> None:
        """Join the realm: one beat, so a Redis that does not answer fails the start."""
        try:
            await self._beat()
        except Unavailable as exc:
            raise Unavailable(
                "unreachable", exc.message.replace("unavailable", "unreachable"),
                "check --engine, and that Redis is running and reachable from here",
            ) from None  # fmt: skip

    def make_limits(self) -> SharedLimits:
        return SharedLimits(self._cfg, self.link)

    def make_queue(self, outbox: Outbox) -> SharedQueue:
        cfg = self._cfg
        self.queue = SharedQueue(self.link, cfg.queue_limit, cfg.user_queue_limit, outbox, self.state,
                                 local=not cfg.max_concurrent)  # fmt: skip
        return self.queue

    # --- broker.realm.Others -------------------------------------------------

    def others(self) -> list[dict[str, Any]]:
        return self.state.others()

    def remote_workers(self) -> list[dict[str, Any]]:
        return self.state.remote_workers()

    def intents(self) -> set[str]:
        return self.state.intents()

    def can_serve(self, intent: str, model: str | None, user: str | None = None) -> bool:
        return self.state.can_serve(intent, model, user)

    def on(self, kind: str, handle: Callable[[bytes], None]) -> None:
        self._notices[kind] = handle

    def tell_others(self, kind: str, payload: bytes) -> None:
        self.link.call({"op": "tell_others", "field": f"n:{kind}"}, [payload], keep=True)

    def tell(self, broker: str, kind: str, payload: bytes) -> None:
        self.link.call({"op": "tell", "to": broker, "field": f"n:{kind}"}, [payload], keep=True)

    def watching(self) -> bool:
        return self.state.watching

    async def live_guids(self, user: str) -> list[str]:
        reply = await self.link.call({"op": "live", "u": user})
        return [str(g) for g in items(reply.result.get("gs"))]

    def serve(
        self,
        host: Host,
        registry: WorkerRegistry,
        describe: Callable[[], dict[str, Any]],
        restore: Callable[[], Awaitable[int]],
        changed: Callable[[], None],
        trust: Callable[[WorkerEntry], dict[str, object]],
    ) -> None:
        """Start the beat, the inbox and the reconcile. ``describe()``: this
        broker as the others see it; ``restore()``: the dispatcher's reconcile
        with the journal; ``changed()``: the realm's view moved (push it);
        ``trust(worker)``: what a sysop sees of a worker's trust."""
        self._host, self._registry, self._describe, self._restore, self._changed, self._trust = (
            host, registry, describe, restore, changed, trust,
        )  # fmt: skip
        self.link.listen(self._inbox)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(self._cfg.engine_beat_s, self._beat, "engine-beat")),
            loop.create_task(self._every(RECONCILE_S, self._reconcile, "engine-reconcile")),
        ]

    # --- the beat ----------------------------------------------------------

    async def _every(self, seconds: float, run: Callable[[], Awaitable[None]], task: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await run()
            except Unavailable:
                pass  # the link logged and counted it; the next beat tries again
            except Exception:
                self._report(task)
                log.exception("engine task %s failed; retrying in %g s", task, seconds)

    async def _beat(self) -> None:
        cfg = self._cfg
        info = {**self._describe(), "id": self.id, "host": socket.gethostname(), "pid": os.getpid(),
                "started": self.started}  # fmt: skip
        beat = self.link.call(
            {"op": "beat", "ttl": int(cfg.engine_dead_s * 1000), "epoch": self._epoch,
             "reap": self.link.up_for() >= cfg.engine_dead_s},
            [orjson.dumps(info)],
        )  # fmt: skip
        self._publish_workers()
        reply = await beat
        result = reply.result
        brokers = [orjson.loads(reply.blob(i)) for i in items(result.get("brokers"))]
        workers = [orjson.loads(reply.blob(i)) for i in items(result.get("workers"))]
        self.state.update(brokers, workers, result.get("queues") or {})
        reaped = result.get("reaped")
        if isinstance(reaped, dict) and reaped:
            log.warning("reaped broker(s) that stopped beating: %s",
                        ", ".join(f"{b} ({n} running intent(s) queued again)" for b, n in reaped.items()))
            if self.queue is not None:
                self.queue.pull_all(told=True)  # their intents are queued again: this broker may take some
        epoch = str(result.get("epoch"))
        if self._known_epoch is not None and epoch != self._known_epoch:
            log.warning("the realm's engine lost its data (epoch %s -> %s): putting back this broker's part",
                        self._known_epoch, epoch)  # fmt: skip
            self._published.clear()
            self._reassert()
            asyncio.get_running_loop().call_later(2 * cfg.engine_beat_s, self._reconcile_soon)
        elif self._known_epoch is not None and not result.get("known"):
            log.warning("this broker was presumed dead and reaped: intents it ran may run twice")
            self._published.clear()  # the reap took its workers off the realm's list: put them back
        self._known_epoch = epoch
        self._changed()

    def _publish_workers(self) -> None:
        if self._registry is None:
            return
        current = {}
        for w in self._registry:
            # As a sysop sees it; RealmViews leaves out the private part for everyone else.
            entry = w.to_dict(private=True)
            entry["trust"] = self._trust(w)
            entry["broker"] = self.id
            current[w.id] = orjson.dumps(entry).decode()
        gone = sorted(self._published - set(current))
        self._published = set(current)
        # Nobody waits for it: a failure (Redis down) is logged and counted by
        # the link, and the next beat sends the list again.
        self.link.call({"op": "workers", "set": current, "del": gone}).add_done_callback(_seen)

    def workers_changed(self) -> None:
        """A worker joined or left: tell the realm now, not at the next beat."""
        self._publish_workers()

    def _reassert(self) -> None:
        """Redis lost the realm's data: put back the jobs this broker runs."""
        if self._registry is None:
            return
        for w in self._registry:
            for job in w.running.values():
                home = job.client.home if isinstance(job.client, RemotePeer) else self.id
                self.link.call(running_here(job, home), [encode(job.query)], keep=True)

    def _reconcile_soon(self) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._restore_now()))

    async def _restore_now(self) -> None:
        if self._restore is None:
            return
        try:
            restored = await self._restore()
        except Unavailable:
            return
        if restored:
            log.warning("queued %d unfinished intent(s) again from the journal", restored)

    async def _reconcile(self) -> None:
        reply = await self.link.call({"op": "lock", "name": "reconcile", "ms": int(RECONCILE_S * 1000 * 0.9)})
        if reply.result.get("got"):
            await self._restore_now()

    # --- the inbox -----------------------------------------------------------

    def _inbox(self, fields: dict[bytes, bytes]) -> None:
        host = self._host
        assert host is not None and self.queue is not None
        for key, value in fields.items():
            kind, _, name = key.decode().partition(":")
            if kind == "g":
                host.relay(name, value.split(b"\n"))
            elif key == b"c:pull":
                self.queue.pull(value.decode(), told=True)
            elif key == b"c:run":  # its jobs' payloads are this entry's q:G fields
                self.queue.told_to_run(orjson.loads(value), fields)
            elif key == b"c:end":
                request = orjson.loads(value)
                host.end(request["g"], Ending(*request["ending"]))
            elif key == b"c:moved":
                host.moved(value.decode())
            elif key == b"c:rehome":
                request = orjson.loads(value)
                client = RemotePeer(request["home"], request["g"], self.link, self.queue.outbox)
                host.rehome(request["g"], client, int(request.get("run", 0)), int(request.get("offset", 0)))
            elif kind == "n":
                handle = self._notices.get(name)
                if handle is not None:
                    handle(value)

    # --- leaving -------------------------------------------------------------

    async def close(self, grace: float) -> int:
        """Leave the realm, giving Redis at most ``grace`` seconds; the number
        of operations that must not be lost that it never took."""
        deadline = time.monotonic() + grace
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.queue is not None:
            await self.queue.close()
        await self.link.stop_listening(grace)
        try:
            await asyncio.wait_for(self.link.call({"op": "leave"}), max(0.0, deadline - time.monotonic()))
        except (Unavailable, TimeoutError, asyncio.CancelledError):
            log.warning("could not tell the realm this broker left; it is reaped in %g s", self._cfg.engine_dead_s)
        return await self.link.close(max(0.0, deadline - time.monotonic()))


def _seen(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved: asyncio would log it as never retrieved

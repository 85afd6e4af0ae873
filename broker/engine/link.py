"""One broker's link to the realm's engine (Redis): batched rounds, and its inbox.

Every change to the realm's shared state is an operation of ``realm.lua``.
The operations a broker asks for during one event-loop pass travel as one
call of that script (one round trip, one atomic step in Redis, however many
intents moved); while a round is on the wire the next one gathers, so rounds
grow with the load instead of the round trips.

An operation that must not be lost (an outcome, a requeue, frames for a
client on another broker) is ``keep``: when Redis does not answer it is
retried, in order, until it does. Any other operation fails at once with
:class:`broker.protocol.Unavailable`, so a client hears ``unavailable`` now
rather than waiting.

The inbox is this broker's stream in Redis: frames other brokers' workers
produced for its clients, and requests (pull, end, rehome, realm notices).
A dedicated connection reads it with a blocking XREAD from where it left off,
so nothing in it is missed across a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aredis
from redis import exceptions as rex

from broker.protocol import Unavailable

log = logging.getLogger("mtor.broker")

SCRIPT = (resources.files("broker.engine") / "realm.lua").read_text(encoding="utf-8")
COMMAND_TIMEOUT_S = 5.0
INBOX_BLOCK_MS = 1000
LAZY_S = 0.005  # the longest a lazy call waits for a round to ride with
# Redis does not answer (down, restarting, loading its append-only file, unreachable).
DOWN = (rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, OSError, asyncio.TimeoutError)


@dataclass(slots=True)
class Reply:
    """One operation's result, and the blobs the round returned (1-based, as Lua counts)."""

    result: dict[str, Any]
    blobs: list[bytes]

    def blob(self, index: int) -> bytes:
        return self.blobs[index - 1]


@dataclass(slots=True)
class _Call:
    op: dict[str, Any]
    blobs: list[bytes]
    keep: bool
    done: asyncio.Future[Reply] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def items(value: Any) -> list[Any]:
    """A JSON list from Lua's cjson, which writes an empty list as {}."""
    return value if isinstance(value, list) else []


class Link:
    def __init__(self, url: str, realm: str, broker_id: str, report: Callable[[str], None]) -> None:
        """``report(task)`` counts a failed round in /metrics (it is logged and retried)."""
        self.id = broker_id
        self.url = url
        self.prefix = f"mtor:{realm}:"
        self._report = report
        self._redis = aredis.Redis.from_url(
            url, socket_timeout=COMMAND_TIMEOUT_S, socket_connect_timeout=2.0, health_check_interval=30
        )
        self._reader = aredis.Redis.from_url(
            url, socket_timeout=COMMAND_TIMEOUT_S + INBOX_BLOCK_MS / 1000, socket_connect_timeout=2.0
        )
        self._script = self._redis.register_script(SCRIPT)
        self._pending: list[_Call] = []
        self._lazy: list[_Call] = []  # lazy calls waiting for the next round (see call)
        self._lazy_timer: asyncio.TimerHandle | None = None
        self._sending: list[_Call] = []  # the round on the wire (or waiting to be retried)
        self._sender: asyncio.Task[None] | None = None
        self._inbox: asyncio.Task[None] | None = None
        self._closing = False
        self.up_since: float | None = None  # monotonic, while Redis answers
        self.down_since: float | None = time.monotonic()  # monotonic, while it does not
        self.rounds = 0
        self.ops = 0

    # --- rounds -----------------------------------------------------------

    def call(
        self, op: dict[str, Any], blobs: Iterable[bytes] = (), *, keep: bool = False, lazy: bool = False
    ) -> asyncio.Future[Reply]:
        """Schedule ``op`` for this pass's round; its Reply, or Unavailable.

        ``lazy`` (bookkeeping no one waits for, e.g. a finished job's): it
        rides with the next round instead of making one, or goes after at most
        LAZY_S. A round of its own would hold up the next intent's round by a
        round trip, and at one intent in flight nearly every round is one.
        Calls still reach Redis in the order they were made."""
        call = _Call(op, list(blobs), keep)
        if lazy and not self._pending:
            self._lazy.append(call)
            if self._lazy_timer is None:
                self._lazy_timer = asyncio.get_running_loop().call_later(LAZY_S, self._send_lazy)
            return call.done
        if self._lazy:
            self._pending.extend(self._take_lazy())
        self._pending.append(call)
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._rounds(), name="mtor-engine-rounds")
        return call.done

    def withdraw(self, call: asyncio.Future[Reply]) -> bool:
        """Take back a lazy call not sent yet (what it said is moot now); False if it went."""
        for k, waiting in enumerate(self._lazy):
            if waiting.done is call:
                del self._lazy[k]
                call.cancel()
                if not self._lazy and self._lazy_timer is not None:
                    self._lazy_timer.cancel()
                    self._lazy_timer = None
                return True
        return False

    def _take_lazy(self) -> list[_Call]:
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        lazy, self._lazy = self._lazy, []
        return lazy

    def _send_lazy(self) -> None:
        self._lazy_timer = None
        if not self._lazy:
            return
        self._pending[:0] = self._take_lazy()  # made before anything pending now
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._rounds(), name="mtor-engine-rounds")

    async def _rounds(self) -> None:
        delay = 0.05
        try:
            while self._pending:
                calls, self._pending = self._pending, []
                self._sending = calls
                try:
                    reply = await self._round(calls)
                except DOWN as exc:
                    self._went_down(exc)
                    kept = [c for c in calls if c.keep]
                    for c in calls:
                        if not c.keep and not c.done.done():
                            c.done.set_exception(_unavailable(exc))
                    self._sending = []
                    self._pending[:0] = kept  # first again, in their order
                    if kept:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 1.0)
                    continue
                except (rex.RedisError, ValueError, TypeError) as exc:  # a script error: a bug, not an outage
                    self._report("engine-round")
                    log.error("engine round of %d operation(s) failed: %s", len(calls), exc)
                    for c in calls:
                        if not c.done.done():
                            c.done.set_exception(Unavailable("internal", f"the realm's engine refused: {exc}", ""))
                    continue
                delay = 0.05
                self._came_up()
                for c, result in zip(calls, reply[0], strict=True):
                    if not c.done.done():
                        c.done.set_result(Reply(result if isinstance(result, dict) else {}, reply[1]))
        finally:
            self._sender = None
            self._sending = []

    async def _round(self, calls: list[_Call]) -> tuple[list[Any], list[bytes]]:
        argv: list[bytes | str] = [self.prefix, self.id, b""]
        ops = []
        for c in calls:
            c.op["b"] = len(argv) - 3  # the op's blobs start after those of the ops before it
            argv.extend(c.blobs)
            ops.append(c.op)
        argv[2] = orjson.dumps(ops)
        out = await self._script(keys=[], args=argv)
        self.rounds += 1
        self.ops += len(calls)
        return orjson.loads(out[0]), out

    def _went_down(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.up_since = None
            log.warning("the realm's engine at %s does not answer: %s", self.url, exc)
        self._report("engine-round")

    def _came_up(self) -> None:
        if self.up_since is None:
            if self.down_since is not None and self.rounds > 1:
                log.warning("the realm's engine answers again after %.1f s", time.monotonic() - self.down_since)
            self.up_since = time.monotonic()
            self.down_since = None

    def up_for(self) -> float:
        return 0.0 if self.up_since is None else time.monotonic() - self.up_since

    # --- the inbox ---------------------------------------------------------

    def listen(self, handle: Callable[[dict[bytes, bytes]], None]) -> None:
        """Read this broker's inbox until :meth:`close`; ``handle`` gets each entry's fields."""
        self._inbox = asyncio.get_running_loop().create_task(self._read_inbox(handle), name="mtor-engine-inbox")

    async def _read_inbox(self, handle: Callable[[dict[bytes, bytes]], None]) -> None:
        stream = f"{self.prefix}inbox:{self.id}"
        last = "0-0"
        delay = 0.05
        while not self._closing:
            try:
                got: Any = await self._reader.xread({stream: last}, count=1000, block=INBOX_BLOCK_MS)
            except DOWN as exc:
                self._report("engine-inbox")
                log.debug("inbox read failed, retrying in %.2f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.05
            for _, entries in got or ():
                for entry_id, fields in entries:
                    last = entry_id
                    try:
                        handle(fields)
                    except Exception:
                        self._report("engine-inbox")
                        log.exception("inbox entry %s could not be handled", entry_id)

    async def stop_listening(self, grace: float = INBOX_BLOCK_MS / 1000 + COMMAND_TIMEOUT_S) -> None:
        """Stop reading the inbox, waiting at most ``grace`` seconds for the read to end."""
        self._closing = True
        if self._inbox is not None:
            # Not cancelled first: redis-py can hang in a blocking read it was
            # told to cancel. An entry wakes the read at once and the loop ends.
            deadline = time.monotonic() + grace
            with contextlib.suppress(*DOWN):
                await asyncio.wait_for(self._redis.xadd(f"{self.prefix}inbox:{self.id}", {"c:wake": b""}), grace)
            done, _ = await asyncio.wait({self._inbox}, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                self._inbox.cancel()  # Redis does not answer: nothing is read anyway
                await asyncio.wait({self._inbox}, timeout=1.0)
            self._inbox = None

    def undelivered(self) -> int:
        """Operations that must not be lost and that Redis has not taken yet."""
        return sum(1 for c in (*self._sending, *self._pending, *self._lazy) if c.keep and not c.done.done())

    async def close(self, grace: float = COMMAND_TIMEOUT_S) -> int:
        """Send what is left, for at most ``grace`` seconds; the number of
        operations that must not be lost that Redis never took (logged)."""
        deadline = time.monotonic() + grace
        await self.stop_listening(grace)
        self._send_lazy()
        left = 0
        if self._sender is not None:
            await asyncio.wait({self._sender}, timeout=max(0.0, deadline - time.monotonic()))
            left = self.undelivered()
            if self._sender is not None and not self._sender.done():
                self._sender.cancel()  # it retries against a Redis that does not answer
                await asyncio.wait({self._sender}, timeout=1.0)
            for c in (*self._sending, *self._pending, *self._lazy):
                c.done.cancel()
            self._sending, self._pending, self._lazy = [], [], []
        await self._redis.aclose()
        await self._reader.aclose()
        return left


def _unavailable(exc: BaseException) -> Unavailable:
    return Unavailable(
        "unavailable",
        f"the realm's engine (Redis) is unreachable: {str(exc).strip() or type(exc).__name__}",
        "retry in a moment; resubmitting the same guid is always safe",
        retry_after=1.0,
    )

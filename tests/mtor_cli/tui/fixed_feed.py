"""A realm of known state for snapshot tests: fixed pushes, scripted answers.

It implements mtor_cli.tui.RealmFeed like the real BrokerFeed does, so the app
under test is the same code; only the data is fixed, which makes a screen
deterministic enough to compare pixel for pixel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec

from broker.protocol import Accepted, Error, Result, Stats, SubmitQuery, Token
from mtor_cli.tui import AnswerEvent, ConnectionStatus, FeedEvent

TOKEN = 10**18
T0 = 1_790_000_000  # a fixed wall-clock second for the sparkline buckets


ME = "0x" + "e5" * 20


def _worker(wid: str, tag: str, caps: dict[str, list[str]], running: int, slots: int,
            state: str = "healthy", failure_rate: float = 0.0, ping: float = 1.5) -> dict[str, object]:
    return {
        "id": wid, "name": "", "address": "0x" + tag * 20, "version": "0.1.0",
        "capabilities": [{"intent": i, "models": m, "params": {}} for i, m in caps.items()],
        "slots": slots, "running": running,
        "health": {"state": state, "latency_ms": ping, "failure_rate": failure_rate},
    }


def workers_snapshot() -> list[dict[str, object]]:
    return [
        _worker("w-alpha", "a1", {"chat": ["smollm2-135m"]}, 1, 2, failure_rate=0.01),
        _worker("w-bravo", "b2", {"chat": ["smollm2-135m"], "vision": ["vit-gpt2"]}, 0, 1, ping=4.2),
        _worker("w-charlie", "c3", {"imagine": ["sd-tiny"]}, 0, 1, "quarantined", 0.59, 80.0),
        _worker("w-delta", "d4", {"speech": ["whisper-tiny.en"]}, 2, 2, ping=0.8),
    ]


def intent_events() -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    rows = [
        ("0a1b2c3d4e", "chat", "done", "w-alpha", 1.42),
        ("1b2c3d4e5f", "imagine", "failed", "w-charlie", 9.8),
        ("2c3d4e5f60", "chat", "done", "w-bravo", 0.61),
        ("3d4e5f6071", "speech", "running", "w-delta", None),
        ("4e5f607182", "chat", "queued", None, None),
    ]
    for n, (guid, intent, state, worker, took) in enumerate(rows):
        base = {"guid": guid, "user": ME, "intent": intent, "attempts": 1}
        events.append({**base, "state": "queued", "worker": None, "ts": T0 + n})
        if state != "queued":
            events.append({**base, "state": "running", "worker": worker, "ts": T0 + n + 0.01})
        if took is not None:
            events.append({**base, "state": state, "worker": worker, "ts": T0 + n + took})
    return events


def stats(second: int, completed: int, failed: int) -> Stats:
    return Stats(topic="stats", data={
        "realm": "test", "uptime_s": float(second), "workers": 4, "slots_busy": 3,
        "slots_total": 6, "queued": 9, "running": 3,
        "intents": {"submitted": completed + failed + 12, "completed": completed, "failed": failed},
    })


class FixedClock:
    """The app's wall clock, moved by the feed as it replays its pushes."""

    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


def known_realm(clock: FixedClock) -> list[FeedEvent | Callable[[], None]]:
    """Pushes of a realm with four workers (one quarantined), queues and three minutes of load."""
    events: list[FeedEvent | Callable[[], None]] = [
        ConnectionStatus("online", address=ME),
        Stats(topic="workers", data={"workers": workers_snapshot()}),
        Stats(topic="queue", data={"intents": {"chat": {"depth": 7}, "imagine": {"depth": 2}}, "total": 9}),
        Stats(topic="intents", data={"events": intent_events(), "live": [], "dropped": 0}),
        Stats(topic="ledger", data={"events": [
            {"kind": "capture", "guid": "0a1b2c3d4e", "user": ME, "amount": 2 * TOKEN // 1000},
            {"kind": "capture", "guid": "2c3d4e5f60", "user": ME, "amount": TOKEN // 1000},
        ]}),
    ]
    completed = failed = 0
    for second in range(180):
        def tick(s: int = second) -> None:
            clock.now = float(T0 + s)
        events.append(tick)
        completed += (second * 7) % 13
        failed += 1 if second % 40 == 0 else 0
        events.append(stats(second, completed, failed))
        done = {"guid": f"g{second:04d}", "user": "0x" + "77" * 20, "intent": "chat", "worker": "w-alpha"}
        events.append(Stats(topic="intents", data={"events": [
            {**done, "state": "queued", "ts": T0 + second - 0.2 - (second * 37 % 400) / 1000},
            {**done, "state": "done", "ts": T0 + second},
        ]}))
    return events


def hello_answer() -> list[AnswerEvent]:
    return [
        Accepted(guid="", intent="chat", position=1),
        Token(guid="", text="Hello from "),
        Token(guid="", text="the realm."),
        Result(guid="", intent="chat", text="Hello from the realm.", worker="w-alpha",
               timings={"queue_s": 0.012, "run_s": 0.82}, cost=2 * TOKEN // 1000),
    ]


class FixedFeed:
    """Pushes ``events`` once (calling the callables among them in order), then stays
    quiet; answers prompts from the scripted ``answers``."""

    label = "ws://realm.test:8765"

    def __init__(
        self,
        events: Sequence[FeedEvent | Callable[[], None]],
        answers: dict[str, list[AnswerEvent]] | None = None,
    ) -> None:
        self._events = list(events)
        self._answers = answers or {}
        self.drained = asyncio.Event()
        self.cancelled: list[str] = []
        self._closed = asyncio.Event()

    async def updates(self) -> AsyncIterator[FeedEvent]:
        for event in self._events:
            if callable(event):
                event()  # e.g. move the fixed clock between pushes
            else:
                yield event
        self.drained.set()
        await self._closed.wait()

    async def submit(self, query: SubmitQuery) -> AsyncIterator[AnswerEvent]:
        script = self._answers.get(query.prompt)
        if script is None:
            yield Error(code="no_worker", message=f"no worker serves {query.prompt!r}",
                        hint="start one with `mtor worker serve`", guid=query.guid)
            return
        for event in script:
            yield msgspec.structs.replace(event, guid=query.guid)

    async def cancel(self, guid: str) -> None:
        self.cancelled.append(guid)

    async def close(self) -> None:
        self._closed.set()

"""Pushes for subscribers (the TUI): `stats{topic, data}` on change, coalesced.

A subscriber gets a snapshot of each topic at once, then a fresh one whenever
the topic changed, at most once per ``stats_interval_s``: a busy realm sends
a handful of frames a second, not one per event, and an idle one sends none.
Shapes are documented in docs/protocol.md.

The `queue`, `intents` and `ledger` topics name users and their guids: a
subscriber sees only its own entries unless ``sees_all(address)`` (a sysop)
says otherwise.

In a realm of brokers, a broker whose intents or ledger moved while another
broker has subscribers sends them its events with each push (one notice per
push, not per event), and gives its own subscribers the events it receives:
a subscriber sees the whole realm through whichever broker it is on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from broker.jobs import Job
from broker.peer import Peer
from broker.protocol import Stats, encode
from broker.realm import Alone, Others

TOPICS = ("stats", "workers", "queue", "intents", "ledger", "federation")
PRIVATE_TOPICS = frozenset(("queue", "intents", "ledger"))
MAX_EVENTS = 500  # per push; older events of a burst are counted in `dropped`


class Subscriptions:
    def __init__(
        self,
        interval_s: float,
        sees_all: Callable[[str], bool] = lambda address: False,
        balance_of: Callable[[str], int] | None = None,
        others: Others | None = None,
    ) -> None:
        """``others``: the realm's other brokers, whose subscribers get this
        broker's events (and whose events this broker's subscribers get)."""
        self._interval = interval_s
        self._others = others or Alone()
        self._others.on("events", self._events_from_elsewhere)
        self._sees_all = sees_all
        self._balance_of = balance_of  # None: a free realm has no balances
        self._snapshots: dict[str, Callable[[], dict[str, Any]]] = {}
        self._subscribers: dict[Peer, frozenset[str]] = {}
        self._dirty: set[str] = set()
        self._intent_events: list[dict[str, Any]] = []
        self._ledger_events: list[dict[str, Any]] = []
        self._elsewhere: dict[str, list[dict[str, Any]]] = {"intents": [], "ledger": []}  # other brokers' events
        self._dropped = {"intents": 0, "ledger": 0}
        self._timer: asyncio.TimerHandle | None = None
        self._last_push = 0.0

    def __len__(self) -> int:
        return len(self._subscribers)

    def serve(self, snapshots: dict[str, Callable[[], dict[str, Any]]]) -> None:
        """Where each topic's snapshot comes from (broker.views.RealmViews.topics):
        given once, after the parts that the views read exist, and before any
        socket opens. The views read the dispatcher, which reports to these
        subscriptions; this is the one link made after building."""
        self._snapshots = snapshots

    def subscribe(self, peer: Peer, topics: list[str]) -> str | None:
        """Subscribe ``peer``; returns an error message for unknown topics."""
        unknown = [t for t in topics if t not in TOPICS]
        if unknown:
            return f"unknown topic(s): {', '.join(unknown)}"
        self._subscribers[peer] = frozenset(topics)
        for topic in topics:
            peer.send(Stats(topic=topic, data=self._view(topic, self._data(topic, events=[]), peer)))
        return None

    def unsubscribe(self, peer: Peer) -> None:
        self._subscribers.pop(peer, None)

    def changed(self, *topics: str) -> None:
        if self._subscribers:
            self._dirty.update(topics)
            self._schedule()

    def _watched(self) -> bool:
        return bool(self._subscribers) or self._others.watching()

    def intent_event(self, job: Job, state: str) -> None:
        if not self._watched():
            return
        self._add_event(
            "intents",
            self._intent_events,
            {
                "guid": job.guid,
                "user": job.user,
                "intent": job.intent,
                "state": state,
                "worker": job.worker.id if job.worker is not None else None,
                "attempts": job.attempts,
                "ts": time.time(),
            },
        )
        # Every intent state change moves a worker's load (`running`) too.
        self._dirty.update(("stats", "queue", "workers"))

    def ledger_event(self, kind: str, guid: str, user: str, amount: int) -> None:
        if not self._watched():
            return
        self._add_event(
            "ledger",
            self._ledger_events,
            {"kind": kind, "guid": guid, "user": user, "amount": amount, "ts": time.time()},
        )

    def _add_event(self, topic: str, events: list[dict[str, Any]], event: dict[str, Any]) -> None:
        if len(events) >= MAX_EVENTS:
            events.pop(0)
            self._dropped[topic] += 1
        events.append(event)
        self._dirty.add(topic)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None:
            delay = max(0.0, self._last_push + self._interval - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._push)

    def _data(self, topic: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        if topic == "intents":
            return {"events": events, "dropped": self._dropped["intents"], **self._snapshots["intents"]()}
        if topic == "ledger":
            return {"events": events, "dropped": self._dropped["ledger"]}
        return self._snapshots[topic]()

    def _view(self, topic: str, data: dict[str, Any], peer: Peer) -> dict[str, Any]:
        """``data`` as ``peer`` may see it: only its own intents and ledger events,
        and on `ledger` its own balance."""
        if topic not in PRIVATE_TOPICS or peer.address is None:
            return data
        mine = dict(data)
        if not self._sees_all(peer.address):
            for key in ("events", "live"):
                if key in mine:
                    mine[key] = [e for e in mine[key] if e.get("user") == peer.address]
            if topic == "queue":
                mine["intents"] = {
                    intent: {**q, "users": {u: n for u, n in q["users"].items() if u == peer.address}}
                    for intent, q in data["intents"].items()
                }
        if topic == "ledger" and self._balance_of is not None:
            mine["balance"] = self._balance_of(peer.address)
        return mine

    def _events_from_elsewhere(self, payload: bytes) -> None:
        if not self._subscribers:
            return
        for topic, events in orjson.loads(payload).items():
            self._elsewhere[topic].extend(events[-MAX_EVENTS:])
            self._dirty.add(topic)
        self._dirty.update(("stats", "queue", "workers"))
        self._schedule()

    def _push(self) -> None:
        self._timer = None
        self._last_push = time.monotonic()
        dirty, self._dirty = self._dirty, set()
        mine = {"intents": self._intent_events, "ledger": self._ledger_events}
        self._intent_events, self._ledger_events = [], []
        if any(mine.values()) and self._others.watching():
            self._others.tell_others("events", orjson.dumps(mine))
        events = {topic: mine[topic] + self._elsewhere[topic] for topic in mine}
        self._elsewhere = {"intents": [], "ledger": []}
        for topic in TOPICS:
            if topic not in dirty:
                continue
            data: dict[str, Any] | None = None
            frame: bytes | None = None  # public topics: encoded once for all subscribers
            for peer, topics in list(self._subscribers.items()):
                if peer.closed:
                    del self._subscribers[peer]
                    continue
                if topic not in topics:
                    continue
                if data is None:
                    data = self._data(topic, events.get(topic, []))
                if topic in PRIVATE_TOPICS:
                    peer.send(Stats(topic=topic, data=self._view(topic, data, peer)))
                else:
                    if frame is None:
                        frame = encode(Stats(topic=topic, data=data))
                    peer.send_raw(frame)
        self._dropped = {"intents": 0, "ledger": 0}

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._subscribers.clear()

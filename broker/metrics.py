"""Prometheus metrics, one CollectorRegistry per broker (tests run several in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


class BrokerMetrics:
    def __init__(self, live: Callable[[], dict[str, Any]]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self._intents = Counter(
            "mtor_intents", "Intents finished, by intent and outcome", ["intent", "outcome"],
            registry=self.registry,
        )
        self._rejected = Counter(
            "mtor_rejected", "Requests refused, by error code", ["code"], registry=self.registry
        )
        self._bad_frames = Counter(
            "mtor_bad_frames", "Frames that failed to decode, by socket and code", ["socket", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "mtor_intent_seconds", "From accepted to result or error", ["intent"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        # Gauges are read from the broker's state at scrape time: nothing to
        # keep in sync on the hot path.
        self.registry.register(_LiveCollector(live))
        self._children: dict[tuple[str, str], Any] = {}

    def finished(self, intent: str, outcome: str, seconds: float) -> None:
        key = (intent, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (
                self._intents.labels(intent, outcome),
                self._latency.labels(intent),
            )
        child[0].inc()
        child[1].observe(seconds)

    def rejected(self, code: str) -> None:
        self._rejected.labels(code).inc()

    def bad_frame(self, socket: str, code: str) -> None:
        self._bad_frames.labels(socket, code).inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _LiveCollector:
    def __init__(self, live: Callable[[], dict[str, Any]]) -> None:
        self._live = live

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self._live()
        depth = GaugeMetricFamily("mtor_queue_depth", "Queued intents", labels=["intent"])
        for intent, n in s["queue_depth"].items():
            depth.add_metric([intent], n)
        yield depth
        workers = GaugeMetricFamily("mtor_workers", "Connected workers by health state", labels=["state"])
        for state, n in s["workers_by_state"].items():
            workers.add_metric([state], n)
        yield workers
        slots = GaugeMetricFamily("mtor_worker_slots", "Worker slots", labels=["use"])
        slots.add_metric(["busy"], s["slots_busy"])
        slots.add_metric(["total"], s["slots_total"])
        yield slots
        yield GaugeMetricFamily("mtor_clients", "Connected clients", value=s["clients"])
        yield GaugeMetricFamily("mtor_subscribers", "Clients subscribed to pushes", value=s["subscribers"])
        yield CounterMetricFamily("mtor_tokens", "Tokens relayed to clients", value=s["tokens"])

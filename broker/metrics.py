"""Prometheus metrics, one CollectorRegistry per broker (tests run several in one process).

The hot path only bumps plain Python counters (a dict lookup and an add);
prometheus-client objects are built from them at scrape time, together with
the gauges read from the broker's live state.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator
from typing import Any

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class _Histogram:
    __slots__ = ("counts", "n", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
        self.total += value
        self.n += 1


class BrokerMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self.intents: Counter[tuple[str, str]] = Counter()  # (intent, outcome)
        self.latency: dict[str, _Histogram] = {}  # intent -> accepted to result or error
        self.rejections: Counter[str] = Counter()  # code
        self.bad_frames: Counter[tuple[str, str]] = Counter()  # (socket, code)
        self.task_errors: Counter[str] = Counter()  # background task -> failed runs (each logged, then retried)
        self.undelivered: Counter[str] = Counter()  # store -> writes a stopping broker gave up on (logged)
        self._collector = _Collector(self)
        self.registry = CollectorRegistry()
        self.registry.register(self._collector)

    def finished(self, intent: str, outcome: str, seconds: float) -> None:
        self.intents[(intent, outcome)] += 1
        hist = self.latency.get(intent)
        if hist is None:
            hist = self.latency[intent] = _Histogram()
        hist.observe(seconds)

    def rejected(self, code: str) -> None:
        self.rejections[code] += 1

    def bad_frame(self, socket: str, code: str) -> None:
        self.bad_frames[(socket, code)] += 1

    def task_failed(self, task: str) -> None:
        self.task_errors[task] += 1

    def gave_up(self, store: str, count: int) -> None:
        """A stopping broker's grace ran out with ``count`` writes to ``store`` undone."""
        self.undelivered[store] += count

    def render(self, live: dict[str, Any]) -> tuple[bytes, str]:
        """The Prometheus text: these counters plus ``live``, the gauges read
        from the broker's state now (broker.views.RealmViews.live)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self._collector.live = live
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, metrics: BrokerMetrics) -> None:
        self._m = metrics
        self.live: dict[str, Any] = {}

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        m = self._m
        intents = CounterMetricFamily(
            "mtor_intents", "Intents finished, by intent and outcome", labels=["intent", "outcome"]
        )
        for (intent, outcome), n in sorted(m.intents.items()):
            intents.add_metric([intent, outcome], n)
        yield intents
        latency = HistogramMetricFamily(
            "mtor_intent_seconds", "From accepted to result or error", labels=["intent"]
        )
        for intent, hist in sorted(m.latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), hist.counts, strict=False):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([intent], buckets, hist.total)
        yield latency
        rejected = CounterMetricFamily("mtor_rejected", "Requests refused, by error code", labels=["code"])
        for code, n in sorted(m.rejections.items()):
            rejected.add_metric([code], n)
        yield rejected
        bad = CounterMetricFamily(
            "mtor_bad_frames", "Frames that failed to decode, by socket and code", labels=["socket", "code"]
        )
        for (socket, code), n in sorted(m.bad_frames.items()):
            bad.add_metric([socket, code], n)
        yield bad
        failed = CounterMetricFamily(
            "mtor_task_errors", "Failed runs of a background task (logged, then retried)", labels=["task"]
        )
        for task, n in sorted(m.task_errors.items()):
            failed.add_metric([task], n)
        yield failed
        undelivered = CounterMetricFamily(
            "mtor_stop_undelivered",
            "Writes a stopping broker gave up on after its grace (logged; durable elsewhere)",
            labels=["store"],
        )
        for store, n in sorted(m.undelivered.items()):
            undelivered.add_metric([store], n)
        yield undelivered

        s = self.live
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
        yield GaugeMetricFamily("mtor_brokers", "Brokers of the realm", value=s["brokers"])
        yield GaugeMetricFamily("mtor_clients", "Connected clients", value=s["clients"])
        yield GaugeMetricFamily("mtor_subscribers", "Clients subscribed to pushes", value=s["subscribers"])
        yield CounterMetricFamily("mtor_tokens", "Tokens relayed to clients", value=s["tokens"])
        ledger = s.get("ledger")
        if ledger is not None:
            yield from _ledger_metrics(ledger)


def _ledger_metrics(ledger: dict[str, Any]) -> Iterator[Any]:
    """A paid realm's settlement upkeep: a failure is counted here, never silent."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    yield GaugeMetricFamily(
        "mtor_ledger_upkeep_ok", "1 if the ledger upkeep's last pass succeeded", value=ledger["state"] == "ok"
    )
    yield GaugeMetricFamily(
        "mtor_ledger_upkeep_running", "1 if the ledger upkeep process runs", value=ledger.get("process") == "running"
    )
    yield CounterMetricFamily(
        "mtor_ledger_upkeep_failures", "Failed upkeep passes (logged, retried with backoff)", value=ledger["failures"]
    )
    yield CounterMetricFamily(
        "mtor_ledger_upkeep_restarts", "Times the upkeep process died and was started again",
        value=ledger.get("restarts", 0),
    )
    yield CounterMetricFamily(
        "mtor_ledger_capture_failures", "Captures, releases or passes of postings the journal could not write",
        value=ledger["capture_failures"],
    )
    yield CounterMetricFamily("mtor_ledger_settled_epochs", "Epochs settled on chain", value=ledger["settled_epochs"])
    yield GaugeMetricFamily(
        "mtor_ledger_unsettled_receipts", "Paid queries not settled on chain yet", value=ledger["unsettled_receipts"]
    )
    yield GaugeMetricFamily(
        "mtor_ledger_oldest_unsettled_seconds", "Age of the oldest paid query not settled yet",
        value=ledger["oldest_unsettled_s"],
    )

"""Worker health: heartbeat latency, failure rate, quarantine and probing.

States: ``healthy`` takes work up to its slots; ``quarantined`` takes none
until its probe time; ``probing`` takes one job at a time, and its first
success restores it while a failure quarantines it again for twice as long.
"""

from __future__ import annotations

import time

from broker.config import BrokerConfig

HEALTHY = "healthy"
QUARANTINED = "quarantined"
PROBING = "probing"


class WorkerHealth:
    def __init__(self, config: BrokerConfig) -> None:
        self._cfg = config
        self.state = HEALTHY
        self.latency_ms: float | None = None  # EWMA of ping round trips
        self.job_ms: float | None = None  # EWMA of successful job durations
        self.failure_rate = 0.0  # EWMA over job outcomes, 1 = failure
        self.consecutive_failures = 0
        self.jobs_ok = 0
        self.jobs_failed = 0
        self.quarantines = 0
        self.quarantined_until = 0.0  # monotonic
        self.pings_unanswered = 0

    def _ewma(self, old: float | None, sample: float) -> float:
        return sample if old is None else old + self._cfg.ewma_alpha * (sample - old)

    def pong(self, rtt_ms: float) -> None:
        self.latency_ms = self._ewma(self.latency_ms, rtt_ms)
        self.pings_unanswered = 0

    def success(self, job_ms: float) -> bool:
        """Record a finished job; True when this restored a probing worker."""
        self.jobs_ok += 1
        self.consecutive_failures = 0
        self.failure_rate = self._ewma(self.failure_rate, 0.0)
        self.job_ms = self._ewma(self.job_ms, job_ms)
        if self.state == PROBING:
            self.state = HEALTHY
            self.failure_rate = 0.0  # a clean slate, or the rate rule would re-quarantine at once
            return True
        return False

    def failure(self) -> bool:
        """Record a failed or timed-out job; True when this quarantined the worker."""
        self.jobs_failed += 1
        self.consecutive_failures += 1
        self.failure_rate = self._ewma(self.failure_rate, 1.0)
        cfg = self._cfg
        if self.state == PROBING or (
            self.state == HEALTHY
            and (
                self.consecutive_failures >= cfg.quarantine_after_failures
                or (
                    self.jobs_ok + self.jobs_failed >= cfg.quarantine_min_jobs
                    and self.failure_rate >= cfg.quarantine_failure_rate
                )
            )
        ):
            self._quarantine()
            return True
        return False

    def _quarantine(self) -> None:
        cfg = self._cfg
        wait = min(cfg.probe_after_s * (2**self.quarantines), cfg.max_probe_after_s)
        self.quarantines += 1
        self.state = QUARANTINED
        self.quarantined_until = time.monotonic() + wait

    def maybe_probe(self, now: float) -> bool:
        """Move a quarantined worker whose time is up to probing; True if it moved."""
        if self.state == QUARANTINED and now >= self.quarantined_until:
            self.state = PROBING
            return True
        return False

    def capacity(self, slots: int) -> int:
        if self.state == HEALTHY:
            return slots
        if self.state == PROBING:
            return 1
        return 0

    def rank(self) -> tuple[int, int]:
        """Smaller is healthier; coarse (tenths of failure rate), so that load
        decides between similar workers."""
        return (0 if self.state == HEALTHY else 1, int(self.failure_rate * 10 + 0.5))

    def to_dict(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "state": self.state,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "job_ms": None if self.job_ms is None else round(self.job_ms, 3),
            "failure_rate": round(self.failure_rate, 4),
            "consecutive_failures": self.consecutive_failures,
            "jobs_ok": self.jobs_ok,
            "jobs_failed": self.jobs_failed,
            "quarantines": self.quarantines,
            "probe_in_s": round(max(0.0, self.quarantined_until - now), 3)
            if self.state == QUARANTINED
            else None,
        }

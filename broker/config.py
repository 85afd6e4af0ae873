"""Broker settings: one dataclass, defaults that suit one machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from broker.intents import OWNER_ONLY_INTENTS

MiB = 1024 * 1024


def default_db_path() -> Path:
    """The journal's default home: ``$MTOR_HOME/data`` or the user's data dir.

    Mirrors mtor_cli.paths (the broker may not import the CLI).
    """
    home = os.environ.get("MTOR_HOME")
    if home:
        return Path(home) / "data" / "broker.db"
    from platformdirs import user_data_dir

    return Path(user_data_dir("mtor")) / "broker.db"


@dataclass
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0 picks a free port
    db_path: Path | None = None  # SQLite journal; None: default_db_path()
    db_url: str | None = None  # postgresql://...: the journal and accounts every broker of a realm shares
    synchronous_commit: str = "off"  # PostgreSQL's, for the broker's sessions (broker.pg.database)
    engine: str | None = None  # redis://...: the realm's queue, workers and routes, shared by its brokers
    engine_beat_s: float = 1.0  # a broker of a shared realm says it is alive this often...
    engine_dead_s: float = 5.0  # ...and is presumed dead (its running intents queued again) after this silence
    stop_grace_s: float = 5.0  # a stopping broker waits this long for writes on their way to its stores
    realm: str = "mtor"
    max_frame_bytes: int = 8 * MiB
    max_prompt_chars: int = 32_000
    max_attachment_bytes: int = 16 * MiB  # decoded bytes, all attachments of one query together
    queue_limit: int = 1000  # queued intents per intent
    user_queue_limit: int = 100  # queued intents per intent of one user, so no one fills a queue alone
    job_timeout_s: dict[str, float] = field(default_factory=dict)  # per intent
    default_job_timeout_s: float = 120.0
    max_queue_wait_s: float = 600.0  # a queued intent no worker picks up fails after this
    max_attempts: int = 3  # dispatches per intent before it fails
    heartbeat_s: float = 5.0  # broker pings every worker this often
    heartbeat_misses: int = 3  # unanswered pings before the worker is dropped
    quarantine_after_failures: int = 3  # consecutive failures
    quarantine_failure_rate: float = 0.5  # EWMA failure rate that also quarantines...
    quarantine_min_jobs: int = 10  # ...once a worker has done at least this many jobs
    probe_after_s: float = 30.0  # first quarantine length; doubles on each relapse
    max_probe_after_s: float = 600.0
    ewma_alpha: float = 0.2
    stats_interval_s: float = 0.15  # subscriber pushes are coalesced to at most one per interval
    # Accounts, sysop and abuse resistance (broker/accounts.py, sysop.py, trust.py, ratelimit.py).
    operator: str | None = None  # address with the sysop role by right (the key that runs the broker)
    tls_cert: Path | None = None  # with tls_key: serve wss:// and https://
    tls_key: Path | None = None
    rate_per_minute: int = 0  # submit_query per user per minute; 0: unlimited
    max_concurrent: int = 0  # live (queued or running) intents per user; 0: unlimited
    untrusted_slots: int = 0  # a new worker's concurrency until trusted; 0: no limit
    trust_after_jobs: int = 20  # completed jobs that make a worker trusted
    maintenance_after: int = 5  # aborted or timed-out jobs among a worker's last 20...
    max_tokens_per_s: float = 0.0  # ...or a result faster than this (implausible); 0: no check
    spot_check_rate: float = 0.0  # share of greedy chat results re-run on a trusted worker and compared
    request_window_s: float = 60.0  # how old a signed REST request may be
    # Sockets that have not logged in (broker/gate.py).
    login_timeout_s: float = 10.0  # to send a good hello/register; also how long an HTTP connection may idle
    max_unauthenticated: int = 2048  # at once, in all (at most a quarter of the open-file limit)
    max_unauthenticated_per_ip: int = 64  # at once, from one address
    max_login_frame_bytes: int = 64 * 1024  # a frame before login (hello/register are small)
    # Served only by a worker registered by the asker's own address, whatever the
    # worker declares (a capability may also declare itself owner_only).
    owner_only_intents: frozenset[str] = OWNER_ONLY_INTENTS

    def __post_init__(self) -> None:
        positive = {
            "max_frame_bytes": self.max_frame_bytes,
            "max_prompt_chars": self.max_prompt_chars,
            "queue_limit": self.queue_limit,
            "user_queue_limit": self.user_queue_limit,
            "max_attempts": self.max_attempts,
            "default_job_timeout_s": self.default_job_timeout_s,
            "heartbeat_s": self.heartbeat_s,
            "heartbeat_misses": self.heartbeat_misses,
            "quarantine_after_failures": self.quarantine_after_failures,
            "stats_interval_s": self.stats_interval_s,
            "engine_beat_s": self.engine_beat_s,
            "login_timeout_s": self.login_timeout_s,
            "max_unauthenticated": self.max_unauthenticated,
            "max_unauthenticated_per_ip": self.max_unauthenticated_per_ip,
            "max_login_frame_bytes": self.max_login_frame_bytes,
            **{f"job_timeout_s[{k!r}]": v for k, v in self.job_timeout_s.items()},
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"broker setting {name} must be > 0, got {value!r}")
        if not self.stop_grace_s >= 0:
            raise ValueError(f"broker setting stop_grace_s must be >= 0, got {self.stop_grace_s!r}")
        if self.engine_dead_s < 2 * self.engine_beat_s:
            raise ValueError("engine_dead_s must be at least twice engine_beat_s")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")

    def timeout_for(self, intent: str) -> float:
        return self.job_timeout_s.get(intent, self.default_job_timeout_s)

    def resolved_db_path(self) -> Path:
        return Path(self.db_path) if self.db_path is not None else default_db_path()

    @property
    def transport_max_msg_size(self) -> int:
        # Well above our own limit so an oversized frame reaches us and gets an
        # `error{frame_too_large}` instead of aiohttp closing the socket.
        return 2 * self.max_frame_bytes + MiB

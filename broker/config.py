"""Broker settings: one dataclass, defaults that suit one machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
    db_path: Path | None = None  # None: default_db_path()
    realm: str = "mtor"
    max_frame_bytes: int = 8 * MiB
    max_prompt_chars: int = 32_000
    max_attachment_bytes: int = 16 * MiB  # decoded bytes, all attachments of one query together
    queue_limit: int = 1000  # queued intents per intent
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

    def timeout_for(self, intent: str) -> float:
        return self.job_timeout_s.get(intent, self.default_job_timeout_s)

    def resolved_db_path(self) -> Path:
        return Path(self.db_path) if self.db_path is not None else default_db_path()

    @property
    def transport_max_msg_size(self) -> int:
        # Well above our own limit so an oversized frame reaches us and gets an
        # `error{frame_too_large}` instead of aiohttp closing the socket.
        return 2 * self.max_frame_bytes + MiB

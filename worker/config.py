"""How a worker connects to its broker (or to one of its realm's brokers)."""

from __future__ import annotations

from dataclasses import dataclass, field

WORKER_PATH = "/ws/worker"


@dataclass
class WorkerConfig:
    """Settings of one worker process.

    ``broker_url`` is the realm's base URL (``ws://host:port``), or several
    brokers of one realm, comma-separated (``ws://a:8765,ws://b:8765``): the
    worker serves through one and moves to the next when it goes away. The
    worker socket's path is added unless a URL already names one.
    """

    broker_url: str
    slots: int | None = None  # jobs run at once; None: what the backends can batch (Backend.slots)
    name: str = ""
    heartbeat_s: float = 15.0  # WebSocket ping interval; a silent broker is dropped after it
    connect_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_frame_bytes: int = 16 * 1024 * 1024  # works carry attachments (images, audio)
    drain_s: float = 30.0  # on stop: how long running jobs may finish before they are handed back
    ws_urls: list[str] = field(init=False)  # each broker's worker socket

    def __post_init__(self) -> None:
        if self.slots is not None and self.slots < 1:
            raise ValueError(f"slots must be >= 1, got {self.slots}")
        if self.drain_s < 0:
            raise ValueError(f"drain_s must be >= 0, got {self.drain_s}")
        urls = [u.strip() for u in self.broker_url.split(",") if u.strip()]
        for url in urls or [self.broker_url]:
            if not url.startswith(("ws://", "wss://", "http://", "https://")):
                raise ValueError(
                    f"broker URL {url!r} must start with ws:// or wss:// (e.g. ws://127.0.0.1:8765)"
                )
        self.ws_urls = [_worker_socket(url) for url in urls]

    @property
    def ws_url(self) -> str:
        """The first broker's worker socket."""
        return self.ws_urls[0]


def _worker_socket(url: str) -> str:
    url = url.rstrip("/")
    if url.startswith("http"):
        url = "ws" + url[len("http") :]
    return url if url.endswith(WORKER_PATH) else url + WORKER_PATH

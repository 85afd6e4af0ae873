"""Who may open a socket, and how long it may take to log in.

A socket that has not logged in yet costs the broker a file descriptor and
memory and proves nothing, so those are bounded: at most
``max_unauthenticated`` at once in all and ``max_unauthenticated_per_ip``
from one address (more are refused before the WebSocket upgrade with HTTP 503
and ``{"error": {"code": "busy", ...}}``), and each gets ``login_timeout_s`` to
send a good ``hello``/``register`` before it is closed (``error{code:
"login_timeout"}``, close code 4008). Logged-in sockets are not counted: an
idle crowd can never lock out people who log in.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from broker.protocol import Error, MtorError

if TYPE_CHECKING:
    from broker.peer import Peer

log = logging.getLogger("mtor.broker")

LOGIN_TIMEOUT_CLOSE = 4008
RETRY_AFTER_S = 1.0


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (a
    realm holds one per socket); returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not on this platform (Windows): nothing to raise
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %s to %s: %s", soft, want, exc)
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


class Pending:
    """One socket between its upgrade and its login (or its close)."""

    def __init__(self, gate: Gate, remote: str) -> None:
        self._gate = gate
        self._remote = remote
        self._timer: asyncio.TimerHandle | None = None
        self._open = True

    def watch(self, peer: Peer) -> None:
        """Start the login deadline for ``peer``."""
        self._timer = self._gate.deadline(peer)

    def done(self) -> None:
        """Logged in, or closed: it no longer counts. Idempotent."""
        if self._open:
            self._open = False
            self._gate.leave(self._remote)
            if self._timer is not None:
                self._timer.cancel()


class Gate:
    def __init__(self, login_timeout_s: float, max_total: int, max_per_ip: int) -> None:
        self._timeout = login_timeout_s
        self._max_total = max_total
        self._max_per_ip = max_per_ip
        self._per_ip: dict[str, int] = {}
        self._total = 0
        self._closing: set[asyncio.Task[None]] = set()  # strong refs: a bare task may be collected mid-close

    @property
    def pending(self) -> int:
        """Sockets open and not logged in yet."""
        return self._total

    def admit(self, remote: str) -> Pending | MtorError:
        """A new socket from ``remote``: counted as pending, or the refusal."""
        refusal = self._refusal(remote)
        if refusal is not None:
            return refusal
        self._per_ip[remote] = self._per_ip.get(remote, 0) + 1
        self._total += 1
        return Pending(self, remote)

    def _refusal(self, remote: str) -> MtorError | None:
        if self._total >= self._max_total:
            return MtorError(
                "busy", f"the broker has {self._total} logins under way", "retry in a moment", retry_after=RETRY_AFTER_S
            )
        if self._per_ip.get(remote, 0) >= self._max_per_ip:
            return MtorError(
                "busy",
                f"{remote} has {self._max_per_ip} connections that have not logged in",
                "log in on the connections you have (or close them), then retry",
                retry_after=RETRY_AFTER_S,
            )
        return None

    def leave(self, remote: str) -> None:
        left = self._per_ip.get(remote, 0) - 1
        if left > 0:
            self._per_ip[remote] = left
        else:
            self._per_ip.pop(remote, None)
        self._total -= 1

    def deadline(self, peer: Peer) -> asyncio.TimerHandle:
        """Close ``peer`` if it has not logged in within the login timeout."""
        return asyncio.get_running_loop().call_later(self._timeout, self._expire, peer)

    def _expire(self, peer: Peer) -> None:
        if peer.authenticated or peer.closed:
            return
        peer.send(
            Error(
                code="login_timeout",
                message=f"no signed hello/register within {self._timeout:g} s",
                hint="answer the `challenge` at once; reconnect to try again",
            )
        )
        task = asyncio.get_running_loop().create_task(peer.close(code=LOGIN_TIMEOUT_CLOSE, message=b"login timeout"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

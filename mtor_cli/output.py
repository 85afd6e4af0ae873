"""Shared printing for every ``mtor`` command, and the exit-code convention.

People get rich tables and progress bars on stderr; scripts get ``--json``
(one JSON object on stdout) and exit codes they can trust:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success
1     the request failed or was rejected (bad input, worker failed, cancelled...)
2     usage error: a bad option or argument (before anything was sent)
3     the broker is unreachable (connection refused, handshake failed, realm down)
4     no capacity: no worker serves the intent/model, the queue is full, rate limited
5     timeout: no answer in time
6     payment: insufficient funds or the price is above ``--max-price``
130   interrupted (Ctrl-C); the running request is cancelled
====  ==========================================================================

Every failure prints ONE line on stderr: what went wrong, its stable code, and
a hint, e.g. ``mtor: no worker serves intent 'imagine' [no_worker] - hint: ...``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NO_CAPACITY = 4
EXIT_TIMEOUT = 5
EXIT_PAYMENT = 6
EXIT_INTERRUPTED = 130

# Error code (broker.protocol.ERROR_CODES plus the client's own) -> exit status.
# Codes not listed here exit with EXIT_FAILED.
_EXIT_BY_CODE: dict[str, int] = {
    "unreachable": EXIT_UNREACHABLE,
    "disconnected": EXIT_UNREACHABLE,
    "handshake_failed": EXIT_UNREACHABLE,
    "realm_failed": EXIT_UNREACHABLE,
    "no_worker": EXIT_NO_CAPACITY,
    "queue_full": EXIT_NO_CAPACITY,
    "rate_limited": EXIT_NO_CAPACITY,
    "busy": EXIT_NO_CAPACITY,
    "timeout": EXIT_TIMEOUT,
    "insufficient_funds": EXIT_PAYMENT,
    "price_exceeded": EXIT_PAYMENT,
    "insufficient_tokens": EXIT_PAYMENT,
    "bad_authorisation": EXIT_PAYMENT,
    "exit_pending": EXIT_PAYMENT,
    "no_gas": EXIT_PAYMENT,
    "chain_unreachable": EXIT_UNREACHABLE,
    "usage": EXIT_USAGE,
    "interrupted": EXIT_INTERRUPTED,
}


def exit_code_for(code: str) -> int:
    """The process exit status for an error code."""
    return _EXIT_BY_CODE.get(code, EXIT_FAILED)


_stderr: Console | None = None


def err_console() -> Console:
    """The rich console on stderr (progress bars, notes, tables for errors)."""
    global _stderr
    if _stderr is None:
        from rich.console import Console

        _stderr = Console(stderr=True, highlight=False)
    return _stderr


def out_console() -> Console:
    """A rich console on the current stdout (tables for people)."""
    from rich.console import Console

    return Console(highlight=False)


def note(message: str) -> None:
    """A status line for people, on stderr so stdout stays the answer."""
    err_console().print(message, style="dim", markup=False, soft_wrap=True)


def error_line(code: str, message: str, hint: str = "") -> str:
    line = f"mtor: {message.rstrip('.')} [{code}]"
    if hint:
        line += f" - hint: {hint}"
    return line


def fail(code: str, message: str, hint: str = "") -> NoReturn:
    """Print the one error line and exit with the status for ``code``."""
    print(error_line(code, message, hint), file=sys.stderr, flush=True)
    raise SystemExit(exit_code_for(code))


def print_json(obj: Any) -> None:
    """One JSON object on stdout: indented for a terminal, one line for a pipe."""
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def log_to_stderr(quiet: bool = False) -> None:
    """Show the long-running services' logs (``mtor.*`` loggers) on stderr."""
    import logging

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )

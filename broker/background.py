"""Writes nothing waits for (a trust record, an audit line), run as tasks.

A failure is logged and counted in /metrics (``mtor_task_errors_total{task}``)
and never ends anything else; the broker waits for what is still running
when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("mtor.broker")


class Background:
    def __init__(self, report: Callable[[str], None]) -> None:
        self._report = report
        self._tasks: set[asyncio.Task[Any]] = set()  # strong refs: a bare task may be collected mid-run

    def run(self, name: str, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"mtor-{name}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(name, done))

    def _finished(self, name: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._report(name)
            log.error("background %s failed: %s", name, exc, exc_info=exc)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

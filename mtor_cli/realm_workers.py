"""The embedded realm's workers besides chat: one per intent this machine can serve.

Every ready row of :func:`mtor_cli.realm_models.catalogue` gets its own
worker (its own slots, so a long chat never holds up a transcription). Model
intents (speech, tts, embed, vision, imagine) register at once and load on
their first job, with a progress line (:func:`worker.lazy.lazy`); weather has
no model; email runs under the person's own key, since the broker gives an
owner-only intent to its owner's worker only. A backend that cannot even be
built is logged and left out: the realm still serves the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("mtor.realm")

# No weights to load: these start ready; everything else loads on first use.
_NO_MODEL = frozenset({"weather", "email"})
_SLOTS = {"weather": 4, "email": 1}  # model intents: one job at a time on this machine's cores
REGISTER_WAIT_S = 30.0


@dataclass
class Running:
    intent: str
    worker: Any
    task: asyncio.Task[None]


async def start(url: str, realm_account: Any, own_account: Any, gpu: int | None) -> list[Running]:
    """Start a worker for every ready intent but chat and wait (a bounded while)
    until they have registered; returns them for :func:`stop`."""
    from mtor_cli.realm_models import catalogue
    from worker import Worker, WorkerConfig
    from worker.backends.base import Device
    from worker.backends.registry import backend_class
    from worker.lazy import lazy

    device = Device.parse(gpu)
    running: list[Running] = []
    for row in catalogue():
        if row.intent == "chat" or not row.ready:
            if not row.ready:
                log.info("not serving %s: %s (%s)", row.intent, row.missing, row.add)
            continue
        try:
            backend = backend_class(row.intent)(row.model_arg, device, **row.options)
            if row.intent in _NO_MODEL:
                await asyncio.to_thread(backend.load)
            else:
                backend = lazy(backend)
        except Exception as exc:  # one intent that cannot start must not take the realm down
            log.warning("not serving %s: %s", row.intent, exc)
            continue
        account = own_account if row.own_key else realm_account
        config = WorkerConfig(broker_url=url, slots=_SLOTS.get(row.intent, 1), name=f"embedded-{row.intent}")
        worker = Worker(config, [backend], account)
        task = asyncio.create_task(worker.run())
        task.add_done_callback(functools.partial(_ended, row.intent))
        running.append(Running(row.intent, worker, task))
        print(f"{row.intent} worker serving {row.model} ({row.source})", flush=True)
    waits = [asyncio.ensure_future(entry.worker.registered.wait()) for entry in running]
    if waits:
        _done, pending = await asyncio.wait(waits, timeout=REGISTER_WAIT_S)
        for wait in pending:
            wait.cancel()
        if pending:
            log.warning("%d worker(s) had not registered after %g s", len(pending), REGISTER_WAIT_S)
    return running


def _ended(intent: str, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the %s worker stopped: %s", intent, task.exception())


async def stop(running: list[Running]) -> None:
    for entry in running:
        await entry.worker.stop()
    for entry in running:
        if not entry.task.done():
            entry.task.cancel()
    await asyncio.gather(*(entry.task for entry in running), return_exceptions=True)

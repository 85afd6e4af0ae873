"""The worker loop: one outbound WebSocket to the broker, jobs served concurrently.

The worker dials out (so it works behind NAT), answers the broker's challenge
with a signed ``register``, then serves ``work`` messages, up to ``slots`` at
once. Each job is validated before any model runs (a ``BadInput`` becomes
``failed{retryable: false}``, as does a ``JobError`` raised while running),
streams its tokens and progress, and ends in a ``result`` or a ``failed``. A
backend exception, CUDA out-of-memory included, fails that job only; the
worker keeps serving. When the connection drops, the running jobs are
cancelled (the broker requeues them elsewhere) and the worker reconnects with
capped exponential backoff; given several brokers of a realm, it moves to the
next one at once and backs off only once all of them failed in a row.

:meth:`Worker.stop` drains: it tells the broker (``drain``) to send no new
work, lets running jobs finish for up to ``drain_s``, hands the rest back
(``failed{code: "worker_stopping"}``, run elsewhere, no blame), then closes.

Every outbound frame goes through one ordered outbox per connection, so a
job's tokens always reach the broker before its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from broker.protocol import (
    Broadcast,
    Cancel,
    Capability,
    Challenge,
    Drain,
    Error,
    Failed,
    Msg,
    MtorError,
    Ping,
    Pong,
    Register,
    Welcome,
    Work,
    encode_str,
    sane_recursion_limit,
    server_to_worker_decoder,
    sign_challenge,
)
from worker.backends.base import Backend, BadInput, Emitter, JobError
from worker.config import WorkerConfig

log = logging.getLogger("mtor.worker")

MAX_ERROR_CHARS = 500
CLOSE_WAIT_S = 5.0  # on stop: how long the last frames may take to leave
MAX_SLOTS = 1024  # what the broker accepts in a register


class WorkerRejected(MtorError):
    """The broker refused the registration; retrying would not help."""


class _Dropped(Exception):
    """The connection closed or misbehaved during the handshake."""


@dataclass
class _Job:
    work: Work
    emitter: Emitter
    task: asyncio.Task[None] | None = None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mtor")
    except PackageNotFoundError:
        return "0"


class Worker:
    """Serves ``backends`` to the broker at ``config.broker_url`` as ``account``."""

    def __init__(self, config: WorkerConfig, backends: Iterable[Backend], account: Any) -> None:
        self.config = config
        self.backends = list(backends)
        if not self.backends:
            raise ValueError("a worker needs at least one backend")
        self.account = account
        self.registered = asyncio.Event()  # set while registered with a broker
        self.worker_id: str | None = None
        self.registrations = 0  # successful registrations, reconnects included
        self.url = config.ws_url  # the broker it serves through (or tries) now
        self._at = 0
        self.jobs_done = 0
        self.jobs_failed = 0
        self._loaded = False
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False
        self.slots = config.slots or default_slots(self.backends)
        self._slots = asyncio.Semaphore(self.slots)
        self._jobs: dict[str, _Job] = {}
        self._idle = asyncio.Event()  # set while no job runs
        self._idle.set()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._outbox: asyncio.Queue[Msg] | None = None  # the registered connection's
        self._decoder = server_to_worker_decoder()

    # --- lifecycle --------------------------------------------------------

    async def load(self) -> None:
        """Load every backend's model in threads (the loop stays responsive)."""
        if self._loaded:
            return
        for backend in self.backends:
            log.info("loading %s model %s on %s", backend.intent, backend.model_name, backend.device)
            await asyncio.to_thread(backend.load)
        self._loaded = True

    async def run(self) -> None:
        """Load, connect, serve; reconnect after drops until :meth:`stop`.

        Raises :class:`WorkerRejected` when the broker refuses the registration.
        """
        self._running = True
        self._finished.clear()
        try:
            await self.load()
            sane_recursion_limit()  # model libraries may have raised it (see broker.protocol)
            delay = self.config.reconnect_initial_s
            urls = self.config.ws_urls
            failed = 0  # attempts in a row that did not register
            # Bounds the connect and upgrade only; the open socket lives on.
            timeout = aiohttp.ClientTimeout(total=self.config.connect_timeout_s)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while not self._stopping:
                    before = self.registrations
                    url = self.url = urls[self._at]
                    try:
                        await self._connection(session, url)
                    except (TimeoutError, aiohttp.ClientError, OSError, _Dropped) as exc:
                        log.warning("broker %s unreachable: %s", url, exc)
                    if self._stopping:
                        break
                    # The next broker of the realm first: this one went away or did not answer.
                    self._at = (self._at + 1) % len(urls)
                    if self.registrations > before:
                        delay, failed = self.config.reconnect_initial_s, 0
                        if len(urls) > 1:
                            continue  # served here until now: go on serving through another at once
                    else:
                        failed += 1
                        if failed % len(urls):
                            continue  # some broker of the realm not tried yet in this round
                    wait = delay * random.uniform(0.8, 1.2)
                    log.info("reconnecting in %.1f s", wait)
                    try:
                        await asyncio.wait_for(self._stop_event.wait(), wait)
                    except TimeoutError:
                        pass
                    delay = min(delay * 2, self.config.reconnect_max_s)
        finally:
            for backend in self.backends:
                await asyncio.to_thread(backend.close)
            self._loaded = False
            self._running = False
            self._finished.set()

    async def stop(self) -> None:
        """Drain, close the connection and the models; wait for run() to end.

        The broker is told to send no new work; running jobs get up to
        ``drain_s`` to finish and deliver their results; whatever still runs
        then is handed back, so the broker runs it elsewhere without counting
        it against this worker."""
        self._stopping = True
        self._stop_event.set()
        outbox = self._outbox
        if outbox is not None:
            # Always, idle or not: work already on its way is handed back, and the
            # broker must know it is a drain (no blame), not a failure.
            outbox.put_nowait(Drain())
            if self._jobs:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), self.config.drain_s)
                for job in list(self._jobs.values()):
                    job.emitter.cancel()
                    if job.task is not None:
                        job.task.cancel()
                    outbox.put_nowait(_handed_back(job.work.guid))
                await asyncio.gather(*(j.task for j in list(self._jobs.values()) if j.task), return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(outbox.join(), CLOSE_WAIT_S)  # results and hand-backs are on the wire
        if self._ws is not None:
            await self._ws.close()
        if self._running:
            await self._finished.wait()

    # --- one connection ---------------------------------------------------

    async def _connection(self, session: aiohttp.ClientSession, url: str) -> None:
        cfg = self.config
        ws = await session.ws_connect(
            url,
            heartbeat=cfg.heartbeat_s,
            max_msg_size=cfg.max_frame_bytes,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            autoping=True,
        )
        self._ws = ws
        outbox: asyncio.Queue[Msg] = asyncio.Queue()
        writer = asyncio.create_task(self._write(ws, outbox))
        try:
            if self._stopping:
                return
            await self._handshake(ws, outbox)
            self._outbox = outbox
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._dispatch(frame.data, outbox)
                elif frame.type == aiohttp.WSMsgType.BINARY:
                    log.warning("ignoring a binary frame from the broker")
                else:  # CLOSE / CLOSING / CLOSED / ERROR
                    break
            if not self._stopping:
                log.warning("broker closed the connection (code %s)", ws.close_code)
        finally:
            self.registered.clear()
            self._ws = None
            self._outbox = None
            await self._cancel_jobs()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await ws.close()

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> Any:
        frame = await ws.receive(timeout=self.config.connect_timeout_s)
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise _Dropped(f"connection ended during the handshake ({frame.type.name})")
        try:
            return self._decoder.decode(frame.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise _Dropped(f"unreadable handshake frame: {exc}") from None

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse, outbox: asyncio.Queue[Msg]) -> None:
        challenge = await self._receive(ws)
        if not isinstance(challenge, Challenge):
            raise _Dropped(f"expected a challenge, got {type(challenge).__name__}")
        outbox.put_nowait(
            Register(
                address=self.account.address,
                signature=sign_challenge(self.account.key, challenge.nonce, "worker"),
                nonce=challenge.nonce,
                capabilities=self._capabilities(),
                slots=self.slots,
                name=self.config.name,
                version=_version(),
            )
        )
        answer = await self._receive(ws)
        if isinstance(answer, Error):
            raise WorkerRejected(answer.code, answer.message, answer.hint)
        if not isinstance(answer, Welcome):
            raise _Dropped(f"expected welcome, got {type(answer).__name__}")
        self.worker_id = answer.worker_id
        self.registrations += 1
        self.registered.set()
        log.info("registered with %s as %s (%s)", self.url, answer.worker_id, answer.address)

    def _capabilities(self) -> list[Capability]:
        capabilities = [backend.capability() for backend in self.backends]
        if len(self.backends) > 1:  # each intent bounded by what its backend can batch
            capabilities = [
                msgspec.structs.replace(c, slots=min(b.slots, self.slots))
                for c, b in zip(capabilities, self.backends, strict=True)
            ]
        return capabilities

    async def _write(self, ws: aiohttp.ClientWebSocketResponse, outbox: asyncio.Queue[Msg]) -> None:
        while True:
            msg = await outbox.get()
            try:
                await ws.send_str(encode_str(msg))
            except (ConnectionError, RuntimeError) as exc:
                # The reader sees the close too and ends the connection.
                log.warning("could not send %s: %s", type(msg).__name__, exc)
                return
            finally:
                outbox.task_done()

    def _dispatch(self, data: str, outbox: asyncio.Queue[Msg]) -> None:
        try:
            msg = self._decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("ignoring a malformed frame from the broker: %s", exc)
            return
        if isinstance(msg, Work):
            self._start(msg, outbox)
        elif isinstance(msg, Cancel):
            job = self._jobs.get(msg.guid)
            if job is not None:
                job.emitter.cancel()
        elif isinstance(msg, Ping):
            outbox.put_nowait(Pong(nonce=msg.nonce, ts=msg.ts))
        elif isinstance(msg, Error):
            log.warning("broker error %s: %s %s", msg.code, msg.message, msg.hint)
        elif isinstance(msg, Broadcast):
            log.info("broadcast from %s: %s", msg.sender, msg.message)

    # --- jobs ---------------------------------------------------------------

    def _backend_for(self, work: Work) -> Backend | Failed:
        serving = [b for b in self.backends if b.intent == work.intent]
        if not serving:
            intents = ", ".join(sorted({b.intent for b in self.backends}))
            return Failed(
                guid=work.guid,
                code="unknown_intent",
                message=f"this worker serves {intents}, not {work.intent!r}",
                retryable=True,
            )
        if work.model is None:
            return serving[0]
        for backend in serving:
            if work.model in backend.capability().models:
                return backend
        models = ", ".join(m for b in serving for m in b.capability().models)
        return Failed(
            guid=work.guid,
            code="no_worker",
            message=f"this worker has no {work.intent} model {work.model!r} (it has {models})",
            retryable=True,
        )

    def _start(self, work: Work, outbox: asyncio.Queue[Msg]) -> None:
        if work.guid in self._jobs:
            log.warning("ignoring a second work message for running job %s", work.guid)
            return
        if self._stopping:  # sent before the broker read our `drain`
            outbox.put_nowait(_handed_back(work.guid))
            return
        backend = self._backend_for(work)
        if isinstance(backend, Failed):
            outbox.put_nowait(backend)
            return
        try:
            backend.validate(work)
        except (BadInput, JobError) as exc:
            outbox.put_nowait(_refused(work, exc))
            self.jobs_failed += 1
            return
        except Exception as exc:  # a validator bug is still this job's failure only
            outbox.put_nowait(self._failure(work, exc))
            self.jobs_failed += 1
            return
        job = _Job(work, Emitter(work.guid, outbox.put_nowait))
        self._jobs[work.guid] = job
        self._idle.clear()
        job.task = asyncio.create_task(self._run_job(job, backend, outbox))

    async def _run_job(self, job: _Job, backend: Backend, outbox: asyncio.Queue[Msg]) -> None:
        work = job.work
        try:
            async with self._slots:
                if job.emitter.cancelled:
                    outbox.put_nowait(_cancelled(work.guid))
                    return
                loop = asyncio.get_running_loop()
                started = loop.time()
                try:
                    result = await backend.run(work, job.emitter)
                except asyncio.CancelledError:
                    raise
                except (BadInput, JobError) as exc:
                    self.jobs_failed += 1
                    log.info("job %s refused: %s: %s", work.guid, exc.code, exc.message)
                    outbox.put_nowait(_refused(work, exc))
                    return
                except Exception as exc:
                    self.jobs_failed += 1
                    log.warning("job %s failed: %s", work.guid, exc)
                    outbox.put_nowait(self._failure(work, exc))
                    return
                if job.emitter.cancelled:
                    outbox.put_nowait(_cancelled(work.guid))
                    return
                result.timings.setdefault("worker_s", loop.time() - started)
                self.jobs_done += 1
                outbox.put_nowait(result)
        finally:
            self._jobs.pop(work.guid, None)
            if not self._jobs:
                self._idle.set()

    def _failure(self, work: Work, exc: BaseException) -> Failed:
        detail = str(exc) or type(exc).__name__
        if type(exc).__name__ == "OutOfMemoryError" and "torch" in sys.modules:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            message = f"CUDA out of memory running {work.intent}: {detail}"
        else:
            message = f"{work.intent} backend error: {type(exc).__name__}: {detail}"
        return Failed(
            guid=work.guid,
            code="worker_failed",
            message=message[:MAX_ERROR_CHARS],
            retryable=False,
        )

    async def _cancel_jobs(self) -> None:
        jobs = list(self._jobs.values())
        for job in jobs:
            job.emitter.cancel()
            if job.task is not None:
                job.task.cancel()
        await asyncio.gather(*(j.task for j in jobs if j.task is not None), return_exceptions=True)


def _refused(work: Work, exc: MtorError) -> Failed:
    return Failed(
        guid=work.guid, code=exc.code, message=exc.message[:MAX_ERROR_CHARS], hint=exc.hint, retryable=False
    )


def default_slots(backends: list[Backend]) -> int:
    """A worker's slots when none are given: what its backends can batch, together."""
    return max(1, min(MAX_SLOTS, sum(b.slots for b in backends)))


def _cancelled(guid: str) -> Failed:
    return Failed(guid=guid, code="cancelled", message="cancelled by the broker", retryable=False)


def _handed_back(guid: str) -> Failed:
    return Failed(guid=guid, code="worker_stopping", message="the worker is shutting down", retryable=True)

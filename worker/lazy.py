"""A backend that registers at once, loads its model on the first job, and
unloads it after an idle keep-alive.

The embedded realm offers every intent this machine can serve without
paying for models nobody asks for: speech, tts, embed, vision and imagine
register when the realm starts and load their weights when first used,
saying so in a progress line the person sees (``loading the speech model
(whisper-tiny.en) on first use``). Like the chat model
(:class:`worker.keepalive.KeepAlive`, which does the counting here too), a
model unused for ``keep_alive`` seconds is unloaded (the backend's
``close``) and loaded again by the next job, so a realm at rest holds none of
them. A load that fails is that job's error, with the backend's own message,
and the next job tries again.
"""

from __future__ import annotations

import asyncio

from broker.protocol import Capability, Work, WorkResult
from worker.backends.base import Backend, Emitter, JobError
from worker.keepalive import DEFAULT_KEEP_ALIVE_S, KeepAlive


def lazy(inner: Backend, keep_alive: float = DEFAULT_KEEP_ALIVE_S) -> Backend:
    """``inner``, loaded on its first job instead of at the worker's start and
    unloaded after ``keep_alive`` idle seconds (0: kept once loaded)."""

    class Lazy(Backend):
        intent = inner.intent
        owner_only = inner.owner_only

        def __init__(self) -> None:
            super().__init__(inner.model, inner.device, **inner.options)
            self.inner = inner
            self.keep = KeepAlive(keep_alive, inner.load, inner.close, name=f"{inner.intent} model")
            self._ever_loaded = False

        @property
        def loaded(self) -> bool:
            return self.keep.loaded

        @property
        def model_name(self) -> str:
            return inner.model_name

        def capability(self) -> Capability:
            return inner.capability()

        def validate(self, work: Work) -> None:
            inner.validate(work)

        async def run(self, work: Work, out: Emitter) -> WorkResult:
            if not self.keep.try_acquire():
                await self._load(out)
            try:
                return await inner.run(work, out)
            finally:
                self.keep.release()

        async def _load(self, out: Emitter) -> None:
            """Claim the model, loading it first (jobs that arrive meanwhile wait for the load)."""
            when = "again" if self._ever_loaded else "on first use"
            await out.progress(0, 1, f"loading the {inner.intent} model ({inner.model_name}) {when}")
            try:
                await asyncio.to_thread(self.keep.acquire)
            except Exception as exc:
                raise JobError(
                    "worker_failed",
                    f"the {inner.intent} model ({inner.model_name}) could not be loaded: {exc}",
                    "see `mtor realm models` for what this machine can serve",
                ) from exc
            self._ever_loaded = True
            await out.progress(1, 1, f"the {inner.intent} model is ready")

        def close(self) -> None:
            self.keep.close()
            inner.close()

        def __repr__(self) -> str:
            return f"lazy({inner!r})"

    return Lazy()

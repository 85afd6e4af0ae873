"""A backend that registers at once and loads its model on the first job.

The embedded realm offers every intent this machine can serve without
paying for models nobody asks for: speech, tts, embed, vision and imagine
register when the realm starts and load their weights when first used,
saying so in a progress line the person sees (``loading the speech model
(whisper-tiny.en) ...``). A load that fails is that job's error, with the
backend's own message, and the next job tries again.
"""

from __future__ import annotations

import asyncio

from broker.protocol import Capability, Work, WorkResult
from worker.backends.base import Backend, Emitter, JobError


def lazy(inner: Backend) -> Backend:
    """``inner``, loaded on its first job instead of at the worker's start."""

    class Lazy(Backend):
        intent = inner.intent
        owner_only = inner.owner_only

        def __init__(self) -> None:
            super().__init__(inner.model, inner.device, **inner.options)
            self.inner = inner
            self.loaded = False
            self._lock = asyncio.Lock()

        @property
        def model_name(self) -> str:
            return inner.model_name

        def capability(self) -> Capability:
            return inner.capability()

        def validate(self, work: Work) -> None:
            inner.validate(work)

        async def run(self, work: Work, out: Emitter) -> WorkResult:
            await self._ensure_loaded(out)
            return await inner.run(work, out)

        async def _ensure_loaded(self, out: Emitter) -> None:
            async with self._lock:  # jobs that arrive during the load wait for it
                if self.loaded:
                    return
                await out.progress(0, 1, f"loading the {inner.intent} model ({inner.model_name}) on first use")
                try:
                    await asyncio.to_thread(inner.load)
                except Exception as exc:
                    raise JobError(
                        "worker_failed",
                        f"the {inner.intent} model ({inner.model_name}) could not be loaded: {exc}",
                        "see `mtor realm models` for what this machine can serve",
                    ) from exc
                self.loaded = True
                await out.progress(1, 1, f"the {inner.intent} model is ready")

        def close(self) -> None:
            inner.close()

        def __repr__(self) -> str:
            return f"lazy({inner!r})"

    return Lazy()


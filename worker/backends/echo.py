"""The echo backend: streams the prompt back word by word, no model at all.

It exists for tests and benchmarks of the bus (bench/broker_overhead.py), where
a model's own time would drown the broker's overhead. It is registered as the
"echo" intent, so a realm never routes a real question to it by accident.
"""

from __future__ import annotations

import asyncio
import re
import time

from broker.protocol import Usage, Work, WorkResult
from worker.backends.base import Backend, Emitter
from worker.backends.params import Param, Params

MAX_DELAY_S = 5.0
ECHO_SLOTS = 32


class EchoBackend(Backend):
    """Echo the prompt; ``params.delay_s`` waits that long before each word."""

    intent = "echo"
    PARAMS = Params(
        "echo",
        Param("delay_s", (float,), "seconds to wait before each word", default=0.0, low=0.0, high=MAX_DELAY_S),
    )

    @property
    def slots(self) -> int:
        # No model: as many as the default chat backend batches, so the bus is
        # loaded the way a real chat worker loads it.
        return ECHO_SLOTS

    @property
    def model_name(self) -> str:
        return self.model or "echo"

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        started = time.perf_counter()
        delay: float = self.params.parse(work.params)["delay_s"]
        # Words keep their trailing whitespace so the chunks join back to the prompt.
        chunks = re.findall(r"\S+\s*|\s+", work.prompt)
        sent = 0
        for chunk in chunks:
            if out.cancelled:
                break
            if delay:
                await asyncio.sleep(delay)
            if out.cancelled:
                break
            await out.token(chunk)
            sent += 1
        text = "".join(chunks[:sent])
        return WorkResult(
            guid=work.guid,
            text=text,
            model=self.model_name,
            timings={"run_s": time.perf_counter() - started},
            usage=Usage(prompt_tokens=len(chunks), completion_tokens=sent),
        )

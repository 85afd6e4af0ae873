"""The echo backend: streams the prompt back word by word, no model at all.

It exists for tests and benchmarks of the bus (bench/broker_overhead.py), where
a model's own time would drown the broker's overhead. It is registered as the
"echo" intent, so a realm never routes a real question to it by accident.
"""

from __future__ import annotations

import asyncio
import re
import time

from broker.protocol import Work, WorkResult
from worker.backends.base import Backend, BadInput, Emitter

MAX_DELAY_S = 5.0


class EchoBackend(Backend):
    """Echo the prompt; ``params.delay_s`` waits that long before each word."""

    intent = "echo"

    @property
    def model_name(self) -> str:
        return self.model or "echo"

    def validate(self, work: Work) -> None:
        unknown = set(work.params) - {"delay_s"}
        if unknown:
            raise BadInput(
                "bad_params",
                f"unknown echo parameter(s): {', '.join(sorted(unknown))}",
                "echo accepts only delay_s",
            )
        delay = work.params.get("delay_s", 0.0)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise BadInput("bad_params", "delay_s must be a number", "e.g. delay_s=0.1")
        if not 0.0 <= delay <= MAX_DELAY_S:
            raise BadInput("bad_params", f"delay_s={delay} is out of range", f"use 0..{MAX_DELAY_S}")

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        started = time.perf_counter()
        delay = float(work.params.get("delay_s", 0.0))
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
            usage={"prompt_tokens": len(chunks), "completion_tokens": sent},
        )

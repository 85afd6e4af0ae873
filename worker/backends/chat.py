"""The chat backend: any causal LM, streamed and batched, on the runtime that serves it best.

``--model`` takes a hub id, a local folder, or a ``.gguf`` file; with no model
it serves the default SmolLM2 (worker.models). Prompts go through the model's
chat template. All concurrent chats share one batching engine, so N chats cost
about one forward pass per step while each streams its own text.

Options: ``runtime`` — ``auto`` (default: the int8 ONNX runtime on CPU, built
once from the model; transformers on a GPU), ``onnx`` or ``transformers``
(see ``chat_runtimes``); ``keep_alive`` — seconds without work before the
weights are unloaded (default 300; 0 keeps them loaded), reloaded by the next
chat; ``threads`` (ONNX, default every CPU), ``precision`` (ONNX, default
int8), ``gguf_file``, ``max_batch``; ``load_in_background`` — ``load()``
returns once the tokenizer is ready and the weights load in a thread (the
worker registers meanwhile; the first chat waits for them), which the embedded
realm uses to start in about a second.

Parameters (``work.params``): ``max_tokens``, ``temperature`` (0 = greedy),
``top_p``, ``seed``, ``system`` (a system prompt) and ``history`` (earlier
turns as ``[{"role": "user"|"assistant", "content": "..."}]``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from pathlib import Path
from typing import Any

from broker.protocol import Usage, Work, WorkResult
from worker.backends.base import Backend, BadInput, Device, Emitter
from worker.backends.batching import GenRequest, Outcome, SamplingParams
from worker.backends.chat_runtimes import ChatRuntime, OnnxRuntime, TransformersRuntime, choose_runtime
from worker.backends.params import Param, Params
from worker.keepalive import DEFAULT_KEEP_ALIVE_S, KeepAlive

log = logging.getLogger("mtor.worker.chat")

MAX_TOKENS_CAP = 4096
ROLES = ("system", "user", "assistant")


def _top_p(value: float) -> float:
    if value == 0.0:
        raise BadInput("bad_params", "top_p=0 keeps no tokens", "use a value in (0, 1]")
    return value


def _history(value: list[Any]) -> list[Any]:
    if not all(
        isinstance(turn, dict)
        and turn.get("role") in ROLES
        and isinstance(turn.get("content"), str)
        and set(turn) <= {"role", "content"}
        for turn in value
    ):
        raise BadInput(
            "bad_params",
            "history must be a list of {role, content} turns",
            'e.g. history=[{"role": "user", "content": "hi"}, {"role": "assistant", ...}]',
        )
    return value


# The chat parameters, shared by every backend of the chat intent (upstream.py too).
CHAT_PARAMS = Params(
    "chat",
    Param("max_tokens", (int,), "the most tokens to generate", default=256, low=1, high=MAX_TOKENS_CAP,
          example="e.g. max_tokens=256"),
    Param("temperature", (float,), "0 is greedy", default=0.2, low=0.0, high=2.0),
    Param("top_p", (float,), "nucleus sampling: the probability mass kept", default=0.9, low=0.0, high=1.0,
          convert=_top_p),
    Param("seed", (int,), "the sampling seed, for a reproducible answer", low=0, high=2**63 - 1),
    Param("system", (str,), "a system prompt", example='e.g. system="Answer briefly."'),
    Param("history", (list,), "earlier turns: [{role: user|assistant, content}]", default=[], convert=_history,
          example='e.g. history=[{"role": "user", "content": "hi"}]'),
)  # fmt: skip


class ChatBackend(Backend):
    """Streaming, batched text generation (ONNX int8 on CPU, transformers on GPU)."""

    intent = "chat"
    PARAMS = CHAT_PARAMS

    def __init__(
        self,
        model: str | None,
        device: Device,
        *,
        gguf_file: str | None = None,
        max_batch: int = 32,
        progress: Any = None,
        runtime: str = "auto",
        keep_alive: float = DEFAULT_KEEP_ALIVE_S,
        threads: int | None = None,
        precision: str = "int8",
        load_in_background: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(model, device, **options)
        self.gguf_file = gguf_file
        self.max_batch = max_batch
        self.requested_runtime = runtime
        self.runtime_name = choose_runtime(runtime, device)
        self._progress = progress
        self._threads = threads
        self._precision = precision
        self._background = load_in_background
        # The ONNX runtime's native libraries serve nothing while the model is unloaded.
        libraries = ("/onnxruntime/", "/numpy/", "/numpy.libs/", "/tokenizers/") if self.runtime_name == "onnx" else ()
        self.keep_alive = KeepAlive(float(keep_alive), self._load_engine, self._unload_engine, "chat model", libraries)
        self.runtime: ChatRuntime | None = None
        self._load_lock = threading.Lock()
        self._close_lock = threading.Lock()

    @property
    def slots(self) -> int:
        return self.max_batch  # concurrent chats share one forward pass per step

    @property
    def model_name(self) -> str:
        if self.model is None:
            from worker.models import DEFAULT_CHAT_MODEL_NAME

            return DEFAULT_CHAT_MODEL_NAME
        # A local path is registered by its folder (or .gguf file) name: the
        # broker and other users need a name to ask for, not this disk's layout.
        path = Path(self.model).expanduser()
        if path.exists():
            from worker.onnx_build import build_info

            built = build_info(path).get("name")
            if isinstance(built, str) and built:
                return built  # an ONNX build keeps the name of what it was built from
            return path.stem if path.suffix == ".gguf" else path.name
        return self.model

    @property
    def max_context(self) -> int:
        return self.runtime.max_context if self.runtime is not None else 0

    @property
    def engine(self) -> Any:
        return self.runtime.engine if self.runtime is not None else None

    # --- lifecycle --------------------------------------------------------

    def _runtime(self, name: str) -> ChatRuntime:
        if name == "onnx":
            return OnnxRuntime(
                self.model,
                self.device,
                max_batch=self.max_batch,
                progress=self._progress,
                gguf_file=self.gguf_file,
                precision=self._precision,
                threads=self._threads,
            )
        return TransformersRuntime(
            self.model, self.device, max_batch=self.max_batch, progress=self._progress, gguf_file=self.gguf_file
        )

    def load(self) -> None:
        with self._load_lock:  # a second caller waits for the first load, then finds it done
            if self.runtime is not None:
                return
            self._load()

    def _load(self) -> None:
        from worker.onnx_build import BuildError

        runtime = self._runtime(self.runtime_name)
        try:
            runtime.prepare()
        except BuildError as exc:
            if self.requested_runtime != "auto" or exc.code not in ("unsupported_model", "runtime_missing"):
                raise
            log.warning("%s; serving %s with transformers instead", exc.message, self.model_name)
            self.runtime_name = "transformers"
            runtime = self._runtime(self.runtime_name)
            runtime.prepare()
        self.runtime = runtime
        if self._background:
            threading.Thread(target=self._load_weights, name="mtor-chat-load", daemon=True).start()
        else:
            runtime.load_engine()
            self.keep_alive.started()

    def _load_weights(self) -> None:
        """Load the weights as if for a chat, then let the idle timer run (background load)."""
        try:
            self.keep_alive.acquire()
        except Exception:  # the first chat tries again and fails with the error
            log.exception("loading the %s weights failed", self.model_name)
            return
        self.keep_alive.release()

    def _load_engine(self) -> None:
        assert self.runtime is not None, "load() first"
        self.runtime.load_engine()

    def _unload_engine(self) -> None:
        if self.runtime is not None:
            self.runtime.unload_engine()

    def close(self) -> None:
        with self._close_lock:
            self.keep_alive.close()
            if self.runtime is not None:
                self.runtime.unload_engine()

    def info(self) -> dict[str, Any]:
        return {"context": self.max_context, "batch": self.max_batch, "runtime": self.runtime_name}

    # --- jobs -------------------------------------------------------------

    def validate(self, work: Work) -> None:
        params = self.params.parse(work.params)
        self._encode(work.prompt, params)

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        if self.runtime is None:
            raise RuntimeError("the chat model is not loaded")
        params = self.params.parse(work.params)
        input_ids = self._encode(work.prompt, params)
        if not self.keep_alive.try_acquire():
            await asyncio.to_thread(self.keep_alive.acquire)  # unloaded while idle: load it again
        try:
            return await self._generate(work, out, params, input_ids)
        finally:
            self.keep_alive.release()

    async def _generate(self, work: Work, out: Emitter, params: dict[str, Any], input_ids: list[int]) -> WorkResult:
        engine = self.engine
        if engine is None:
            raise RuntimeError("the chat model is not loaded")
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[Outcome] = loop.create_future()
        aborted = threading.Event()

        seed = params["seed"] if params.get("seed") is not None else secrets.randbits(63)
        engine.submit(
            GenRequest(
                input_ids=input_ids,
                params=SamplingParams(
                    max_tokens=params["max_tokens"],
                    temperature=params["temperature"],
                    top_p=params["top_p"],
                    seed=seed,
                ),
                loop=loop,
                on_text=out.send_token,
                is_cancelled=lambda: out.cancelled or aborted.is_set(),
                done=lambda outcome: _settle(finished, outcome),
            )
        )
        try:
            outcome = await finished
        except asyncio.CancelledError:
            aborted.set()  # the job's task is gone (e.g. broker lost): free the row
            raise
        if outcome.error is not None:
            raise outcome.error
        timings = {"queued_s": outcome.queued_s, "generate_s": outcome.generate_s}
        if outcome.first_token_s is not None:
            timings["first_token_s"] = outcome.first_token_s
        return WorkResult(
            guid=work.guid,
            text=outcome.text,
            model=self.model_name,
            timings=timings,
            usage=Usage(prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens),
            finish_reason=outcome.finish_reason or None,
        )

    def _encode(self, prompt: str, params: dict[str, Any]) -> list[int]:
        if self.runtime is None:
            raise RuntimeError("the chat model is not loaded")
        if not prompt.strip():
            raise BadInput("bad_params", "the prompt is empty", "type what you want to ask")
        messages: list[dict[str, str]] = []
        if params.get("system"):
            messages.append({"role": "system", "content": params["system"]})
        messages.extend(params.get("history", []))
        messages.append({"role": "user", "content": prompt})
        from worker.chat_tokenizer import TemplateError

        try:
            ids = self.runtime.encode(messages)
        except TemplateError as exc:
            raise BadInput(
                "bad_params",
                f"the model's chat template rejects these messages: {exc}",
                "drop `system` or make `history` alternate user/assistant",
            ) from None
        if len(ids) >= self.max_context:
            raise BadInput(
                "prompt_too_long",
                f"the prompt is {len(ids)} tokens; {self.model_name} reads at most "
                f"{self.max_context - 1}",
                "shorten the prompt or the history",
            )
        return ids


def _settle(fut: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not fut.done():
        fut.set_result(outcome)

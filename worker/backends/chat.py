"""The chat backend: any transformers causal LM, streamed and batched.

``--model`` takes a hub id, a local folder, or a ``.gguf`` file (loaded through
transformers' ``gguf_file``); with no model it serves the default SmolLM2
(worker.models). Prompts go through the tokenizer's chat template when it has
one. All concurrent chats share one :class:`~worker.backends.batching.BatchEngine`,
so N chats cost about one forward pass per step while each streams its own text.

Parameters (``work.params``): ``max_tokens``, ``temperature`` (0 = greedy),
``top_p``, ``seed``, ``system`` (a system prompt) and ``history`` (earlier
turns as ``[{"role": "user"|"assistant", "content": "..."}]``).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from pathlib import Path
from typing import Any

from broker.protocol import Usage, Work, WorkResult
from worker.backends.base import Backend, BadInput, Device, Emitter
from worker.backends.batching import BatchEngine, GenRequest, Outcome, SamplingParams
from worker.backends.params import Param, Params

MAX_TOKENS_CAP = 4096
ROLES = ("system", "user", "assistant")
FALLBACK_CONTEXT = 2048


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
)


class ChatBackend(Backend):
    """Streaming, batched text generation with transformers."""

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
        **options: Any,
    ) -> None:
        super().__init__(model, device, **options)
        self.gguf_file = gguf_file
        self.max_batch = max_batch
        self._progress = progress
        self._tokenizer: Any = None
        self._model: Any = None
        self._tok_lock = threading.Lock()
        self.engine: BatchEngine | None = None
        self.max_context = FALLBACK_CONTEXT

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
            return path.stem if path.suffix == ".gguf" else path.name
        return self.model

    # --- lifecycle --------------------------------------------------------

    def _source(self) -> tuple[str, dict[str, Any]]:
        """Where from_pretrained loads from, and the GGUF kwarg if any."""
        if self.model is None:
            from worker.models import default_chat_model

            return str(default_chat_model(self._progress)), {}
        path = Path(self.model).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            return str(path.parent), {"gguf_file": path.name}
        if self.gguf_file:
            return self.model, {"gguf_file": self.gguf_file}
        return str(path) if path.exists() else self.model, {}

    def load(self) -> None:
        if self.engine is not None:
            return
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source, extra = self._source()
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=self.device.torch_dtype, **extra)
        model.to(self.device.torch_device).eval()
        self._tokenizer, self._model = tokenizer, model
        self.max_context = _context_length(model, tokenizer)
        eos = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = min(eos) if eos else 0
        self.engine = BatchEngine(
            model,
            tokenizer,
            self._tok_lock,
            eos_ids=eos,
            pad_id=pad,
            max_context=self.max_context,
            max_batch=self.max_batch,
        )
        self.engine.start()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
        self._model = None
        if self.device.is_cuda:
            import torch

            torch.cuda.empty_cache()

    def info(self) -> dict[str, Any]:
        return {"context": self.max_context, "batch": self.max_batch}

    # --- jobs -------------------------------------------------------------

    def validate(self, work: Work) -> None:
        params = self.params.parse(work.params)
        self._encode(work.prompt, params)

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        if self.engine is None:
            raise RuntimeError("the chat model is not loaded")
        params = self.params.parse(work.params)
        input_ids = self._encode(work.prompt, params)
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[Outcome] = loop.create_future()
        aborted = threading.Event()

        seed = params["seed"] if params.get("seed") is not None else secrets.randbits(63)
        self.engine.submit(
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
        if self._tokenizer is None:
            raise RuntimeError("the chat model is not loaded")
        if not prompt.strip():
            raise BadInput("bad_params", "the prompt is empty", "type what you want to ask")
        messages: list[dict[str, str]] = []
        if params.get("system"):
            messages.append({"role": "system", "content": params["system"]})
        messages.extend(params.get("history", []))
        messages.append({"role": "user", "content": prompt})
        with self._tok_lock:
            if self._tokenizer.chat_template:
                try:
                    encoded = self._tokenizer.apply_chat_template(
                        messages, add_generation_prompt=True, tokenize=True, return_dict=True
                    )
                except Exception as exc:  # jinja templates raise for roles they refuse
                    raise BadInput(
                        "bad_params",
                        f"the model's chat template rejects these messages: {exc}",
                        "drop `system` or make `history` alternate user/assistant",
                    ) from None
                ids = list(encoded["input_ids"])
            else:
                text = "\n\n".join(m["content"] for m in messages)
                ids = list(self._tokenizer(text)["input_ids"])
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


def _context_length(model: Any, tokenizer: Any) -> int:
    for source in (model.config, getattr(model.config, "text_config", None)):
        value = getattr(source, "max_position_embeddings", None) if source is not None else None
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    return FALLBACK_CONTEXT


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids

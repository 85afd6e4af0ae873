"""Intent recognition: text (typed or transcribed) -> intent, prompt and why."""

from __future__ import annotations

from .dataset import Evaluation, Labelled, evaluate, load_labelled
from .embedder import Embedder, MiniLMEmbedder
from .recogniser import (
    DEFAULT_THRESHOLD,
    FALLBACK_INTENT,
    Recogniser,
    Recognition,
    default_recogniser,
    recognise,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "FALLBACK_INTENT",
    "Embedder",
    "Evaluation",
    "Labelled",
    "MiniLMEmbedder",
    "Recogniser",
    "Recognition",
    "default_recogniser",
    "evaluate",
    "load_labelled",
    "recognise",
]

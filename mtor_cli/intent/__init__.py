"""Intent recognition: text (typed or transcribed) -> intent, prompt and why."""

from __future__ import annotations

from .dataset import Evaluation, Labelled, evaluate, load_labelled
from .embedder import Embedder, MiniLMEmbedder
from .recogniser import (
    DEFAULT_THRESHOLD,
    FALLBACK_INTENT,
    Recogniser,
    Recognition,
    RulesOnly,
    default_recogniser,
    installed_recogniser,
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
    "RulesOnly",
    "default_recogniser",
    "evaluate",
    "installed_recogniser",
    "load_labelled",
    "recognise",
]

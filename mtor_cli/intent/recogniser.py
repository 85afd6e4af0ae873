"""Turn free text into an intent: rules first, then the nearest prototype, else chat.

1. ``broker.intents.route``: the wake word, explicit verbs ("imagine ...",
   "transcribe ...") and attachments. Certain, and free.
2. The embedding stage: the request's nearest prototype phrasing
   (:mod:`mtor_cli.intent.prototypes`) by cosine similarity. It decides when
   the similarity reaches ``threshold``.
3. Otherwise chat, the intent that can answer anything; ``source`` says it
   was a fallback so that ``--explain`` shows nothing matched.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from broker.intents import route

from .embedder import Embedder, MiniLMEmbedder
from .prototypes import PROTOTYPES

if TYPE_CHECKING:
    import numpy as np

FALLBACK_INTENT = "chat"
DEFAULT_THRESHOLD = 0.40
# Softmax temperature over per-intent similarities, for the confidence figure only.
_TEMPERATURE = 0.05


@dataclass(frozen=True)
class Recognition:
    intent: str
    prompt: str  # what the model should see: wake word and verb removed where a rule knows them
    confidence: float  # 0..1: 1 for a rule; for the embedding stage, the chosen intent's share
    source: str  # "rule:imagine", "attachment:image", "prototype:vision", "fallback:chat"
    score: float  # similarity of the nearest prototype (1.0 for a rule)
    prototype: str | None = None  # the nearest prototype phrasing, when the embedding stage ran
    woke: bool = False  # the text began with the wake word "Computer"

    @property
    def fallback(self) -> bool:
        return self.source.startswith("fallback:")

    def explain(self) -> str:
        """One line for ``--explain``."""
        if self.prototype is None:
            return f"{self.intent} <- {self.source} (score {self.score:.2f})"
        return (
            f"{self.intent} <- {self.source} (nearest prototype {self.prototype!r}, "
            f"score {self.score:.2f}, confidence {self.confidence:.2f})"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "intent": self.intent,
            "prompt": self.prompt,
            "confidence": round(self.confidence, 4),
            "source": self.source,
            "score": round(self.score, 4),
            "prototype": self.prototype,
            "woke": self.woke,
        }


class Recogniser:
    """Rules, then nearest prototype with a threshold, then chat.

    Replaceable as a whole (anything with ``recognise(text, attachment_kinds)``
    returning a :class:`Recognition` will do) or in part: pass another
    ``embedder`` (any :class:`Embedder`) or other ``prototypes``.
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        prototypes: Mapping[str, Sequence[str]] = PROTOTYPES,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        cache_dir: Path | None = None,
    ) -> None:
        self.embedder: Embedder = embedder or MiniLMEmbedder()
        self.prototypes = {intent: tuple(texts) for intent, texts in prototypes.items()}
        self.threshold = threshold
        self.cache_dir = cache_dir
        self._labels: list[str] = []
        self._texts: list[str] = []
        self._matrix: np.ndarray | None = None
        self._lock = threading.Lock()

    def recognise(self, text: str, attachment_kinds: Sequence[str] = ()) -> Recognition:
        routed = route(text, tuple(attachment_kinds))
        if routed.intent is not None:
            return Recognition(routed.intent, routed.prompt, 1.0, routed.rule, 1.0, woke=routed.woke)
        request = routed.prompt
        if not any(ch.isalnum() for ch in request):
            return Recognition(FALLBACK_INTENT, request, 0.0, f"fallback:{FALLBACK_INTENT}", 0.0, woke=routed.woke)
        return self._nearest(request, routed.woke)

    def warm(self) -> None:
        """Load the model and the prototype vectors now rather than on the first query."""
        self._prototype_matrix()

    def _nearest(self, request: str, woke: bool) -> Recognition:
        matrix = self._prototype_matrix()
        scores = matrix @ self.embedder.embed([request])[0]
        best_per_intent: dict[str, tuple[float, int]] = {}
        for index, (label, score) in enumerate(zip(self._labels, scores.tolist(), strict=True)):
            if label not in best_per_intent or score > best_per_intent[label][0]:
                best_per_intent[label] = (score, index)
        intent, (score, index) = max(best_per_intent.items(), key=lambda item: item[1][0])
        shares = _softmax({label: best for label, (best, _) in best_per_intent.items()})
        if score >= self.threshold:
            return Recognition(
                intent, request, shares[intent], f"prototype:{intent}", score, self._texts[index], woke
            )
        return Recognition(
            FALLBACK_INTENT,
            request,
            shares.get(FALLBACK_INTENT, 0.0),
            f"fallback:{FALLBACK_INTENT}",
            score,
            self._texts[index],
            woke,
        )

    def _prototype_matrix(self) -> np.ndarray:
        with self._lock:
            if self._matrix is None:
                self._labels = [intent for intent, texts in self.prototypes.items() for _ in texts]
                self._texts = [text for texts in self.prototypes.values() for text in texts]
                self._matrix = self._cached_vectors()
            return self._matrix

    def _cached_vectors(self) -> np.ndarray:
        """Prototype vectors, kept on disk keyed by model and phrasings, since
        embedding a hundred prototypes costs more than loading the model.

        Each prototype is embedded on its own, as a query is: the int8 model
        scales its activations per call, so in one batch a prototype's vector
        would shift with the other prototypes beside it, and adding one intent
        would move the others' scores."""
        import numpy as np

        key = hashlib.sha256(
            json.dumps([self.embedder.name, "one-by-one", self._labels, self._texts]).encode()
        ).hexdigest()[:24]
        path = self._cache_root() / f"intent-prototypes-{key}.npy"
        if path.exists():
            vectors = np.load(path)
            if vectors.shape[0] == len(self._texts):
                return vectors
        vectors = np.stack([self.embedder.embed([text])[0] for text in self._texts])
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        return vectors

    def _cache_root(self) -> Path:
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            return self.cache_dir
        from mtor_cli.paths import models_dir

        return models_dir()


def _softmax(scores: Mapping[str, float]) -> dict[str, float]:
    top = max(scores.values())
    weights = {label: math.exp((score - top) / _TEMPERATURE) for label, score in scores.items()}
    total = sum(weights.values())
    return {label: weight / total for label, weight in weights.items()}


_default: Recogniser | None = None
_default_lock = threading.Lock()


def default_recogniser() -> Recogniser:
    """The process-wide recogniser (the model loads once, on the first query that needs it)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Recogniser()
        return _default


def recognise(text: str, attachment_kinds: Sequence[str] = ()) -> Recognition:
    """Recognise one request with the default recogniser."""
    return default_recogniser().recognise(text, attachment_kinds)


class RulesOnly:
    """The rule stage alone, for a client: what no rule decides is a fallback
    recognition, sent with no intent so that the realm's recogniser routes it."""

    def recognise(self, text: str, attachment_kinds: Sequence[str] = ()) -> Recognition:
        routed = route(text, tuple(attachment_kinds))
        if routed.intent is not None:
            return Recognition(routed.intent, routed.prompt, 1.0, routed.rule, 1.0, woke=routed.woke)
        return Recognition(FALLBACK_INTENT, routed.prompt, 0.0, "fallback:realm", 0.0, woke=routed.woke)


def installed_recogniser() -> Recogniser | None:
    """A recogniser for a realm to keep loaded, when its model stack is installed
    (sentence-transformers and the all-MiniLM-L6-v2 wheel); None means rules and chat."""
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is None:
        return None
    try:
        return Recogniser()
    except RuntimeError:  # the model wheel is missing
        return None

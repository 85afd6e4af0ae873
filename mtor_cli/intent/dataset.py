"""Labelled phrasings and the accuracy of a recogniser on them.

One JSON object a line: ``{"text": ..., "intent": ..., "prompt": ...}``.
``intent`` is an intent name or ``"unknown"``: a phrase that asks for
nothing recognisable, which is right only when the recogniser falls back to
chat instead of claiming a match. ``prompt``, when given, must come out
exactly (ignoring case).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .recogniser import Recognition

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Labelled:
    text: str
    intent: str
    prompt: str | None = None


class _Recognises(Protocol):
    def recognise(self, text: str, attachment_kinds: Sequence[str] = ()) -> Recognition: ...


@dataclass
class Evaluation:
    total: int = 0
    correct: int = 0
    per_label: dict[str, list[int]] = field(default_factory=dict)  # label -> [correct, total]
    mistakes: list[tuple[Labelled, Recognition]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def label_accuracy(self, label: str) -> float:
        right, count = self.per_label.get(label, [0, 0])
        return right / count if count else 0.0


def load_labelled(path: Path | str) -> list[Labelled]:
    items: list[Labelled] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(Labelled(str(row["text"]), str(row["intent"]), row.get("prompt")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a labelled phrasing ({exc})") from None
    return items


def is_correct(item: Labelled, got: Recognition) -> bool:
    if item.intent == UNKNOWN:
        return got.fallback
    if got.intent != item.intent:
        return False
    return item.prompt is None or got.prompt.lower() == item.prompt.lower()


def evaluate(recogniser: _Recognises, items: Iterable[Labelled]) -> Evaluation:
    result = Evaluation()
    for item in items:
        got = recogniser.recognise(item.text)
        ok = is_correct(item, got)
        tally = result.per_label.setdefault(item.intent, [0, 0])
        tally[0] += ok
        tally[1] += 1
        result.total += 1
        result.correct += ok
        if not ok:
            result.mistakes.append((item, got))
    return result

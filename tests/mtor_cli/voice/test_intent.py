"""Intent recognition: rules, the nearest prototype of all-MiniLM-L6-v2, the chat fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtor_cli.intent import MiniLMEmbedder, Recogniser, evaluate, load_labelled
from mtor_cli.intent.dataset import UNKNOWN

from . import models

TRAIN = Path(__file__).resolve().parents[2] / "data" / "intents_train.jsonl"


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return models.embedder()


@pytest.fixture(scope="module")
def recogniser(embedder: MiniLMEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Recogniser:
    return Recogniser(embedder, cache_dir=tmp_path_factory.mktemp("cache"))


def test_the_labelled_set_is_broad_enough() -> None:
    items = load_labelled(TRAIN)
    labels = {item.intent for item in items}
    assert len(items) >= 80
    assert {"chat", "vision", "imagine", "speech", "weather", "email", UNKNOWN} <= labels


def test_accuracy_on_the_labelled_set(recogniser: Recogniser) -> None:
    result = evaluate(recogniser, load_labelled(TRAIN))
    wrong = [(item.text, item.intent, got.intent, got.source, round(got.score, 2)) for item, got in result.mistakes]
    assert result.accuracy >= 0.95, wrong
    for label in ("imagine", "vision", "speech", "chat", "weather", "email"):
        assert result.label_accuracy(label) >= 0.85, (label, wrong)


def test_unknown_phrases_fall_back_to_chat(recogniser: Recogniser) -> None:
    unknown = [item for item in load_labelled(TRAIN) if item.intent == UNKNOWN]
    outcomes = [recogniser.recognise(item.text) for item in unknown]
    assert all(got.intent == "chat" and got.source == "fallback:chat" for got in outcomes), [
        (item.text, got.source, got.score) for item, got in zip(unknown, outcomes, strict=True)
    ]
    assert all(got.score < recogniser.threshold for got in outcomes)


def test_an_explicit_verb_is_decided_by_a_rule_without_the_model() -> None:
    class Refuses:
        name = "refuses"

        def embed(self, texts: object) -> np.ndarray:
            raise AssertionError("the embedding model ran for a request a rule decides")

    got = Recogniser(Refuses()).recognise("Computer, imagine a neon mountain.")
    assert (got.intent, got.prompt, got.source, got.score, got.woke) == (
        "imagine",
        "a neon mountain",
        "rule:imagine:verb",
        1.0,
        True,
    )
    assert got.explain() == "imagine <- rule:imagine:verb (score 1.00)"


def test_an_attachment_decides_when_the_text_does_not(recogniser: Recogniser) -> None:
    assert recogniser.recognise("and this one?", ("image",)).source == "attachment:image"
    assert recogniser.recognise("and this one?", ("audio",)).intent == "speech"


def test_a_paraphrase_is_matched_to_its_prototype_and_explained(recogniser: Recogniser) -> None:
    got = recogniser.recognise("I'd enjoy a watercolour scene with lanterns on a river")
    assert got.intent == "imagine"
    assert got.source == "prototype:imagine"
    assert got.score >= recogniser.threshold
    assert got.prototype is not None and got.prototype in got.explain()
    assert "score" in got.explain() and "confidence" in got.explain()


def test_prototype_vectors_are_cached_on_disk_and_reused(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    first = Recogniser(embedder, cache_dir=tmp_path)
    expected = first.recognise("turn my dictaphone file into words")
    cached = list(tmp_path.glob("intent-prototypes-*.npy"))
    assert len(cached) == 1

    class Counting:
        name = embedder.name
        calls: list[int] = []

        def embed(self, texts: list[str]) -> np.ndarray:
            self.calls.append(len(texts))
            return embedder.embed(texts)

    counting = Counting()
    again = Recogniser(counting, cache_dir=tmp_path).recognise("turn my dictaphone file into words")
    assert counting.calls == [1]  # only the query: the prototypes came from the cache
    assert (again.intent, again.source, round(again.score, 4)) == (
        expected.intent,
        expected.source,
        round(expected.score, 4),
    )


def test_other_prototypes_replace_the_defaults(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    custom = Recogniser(
        embedder, {"weather": ("what is the weather forecast",), "chat": ("tell me a story",)}, cache_dir=tmp_path
    )
    got = custom.recognise("will there be rain in Paris tomorrow")
    assert (got.intent, got.source) == ("weather", "prototype:weather")


def test_routing_explains_a_fallback_truthfully(recogniser: Recogniser) -> None:
    """A realm serving chat and tts: a paraphrase placed by the embedding stage
    on an intent nobody serves goes to chat, and --explain says both."""
    from broker.routing import decide

    routing = decide("could I get a poster for a jazz night", (), {"chat", "tts"}, recogniser)
    assert (routing.intent, routing.recognised) == ("chat", "imagine")
    line = routing.explain()
    assert line.startswith("chat <- no worker serves imagine in this realm; recognised: imagine <- prototype:imagine")
    assert "nearest prototype" in line

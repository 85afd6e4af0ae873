"""The realm's recogniser on onnxruntime: all-MiniLM-L6-v2 exported once to int8
ONNX, as accurate as the torch embedder on the labelled set, and no torch in
the process that serves it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtor_cli.intent import Recogniser, evaluate, installed_recogniser, load_labelled
from mtor_cli.intent.onnx_embedder import OnnxMiniLMEmbedder, build_dir, is_built

from . import models

DATA = Path(__file__).resolve().parents[2] / "data"
TEXTS = ["hi", "Computer, tell me a joke", "will it rain in Oslo tomorrow afternoon?", "draw a red fox"]


@pytest.fixture(scope="module")
def onnx_embedder() -> OnnxMiniLMEmbedder:
    embedder = OnnxMiniLMEmbedder()
    embedder.load()  # exports it first when this installation has no build yet
    return embedder


def test_it_is_built_once_per_installation(onnx_embedder: OnnxMiniLMEmbedder) -> None:
    folder = build_dir(onnx_embedder.model_path)
    assert is_built(folder) and (folder / "model.onnx").stat().st_size < 30_000_000  # int8: a quarter of fp32
    assert folder.is_relative_to(Path(sys.prefix))  # beside the model wheels, shared by every MTOR_HOME


def test_the_labelled_set_is_recognised_as_well_as_on_torch(onnx_embedder: OnnxMiniLMEmbedder, tmp_path: Path) -> None:
    recogniser = Recogniser(onnx_embedder, cache_dir=tmp_path)
    result = evaluate(recogniser, load_labelled(DATA / "intents_train.jsonl"))
    wrong = [(item.text, item.intent, got.intent, round(got.score, 2)) for item, got in result.mistakes]
    assert result.accuracy >= 0.95, wrong
    for label in ("imagine", "vision", "speech", "chat", "weather", "email"):
        assert result.label_accuracy(label) >= 0.85, (label, wrong)


def test_vectors_agree_with_the_torch_embedder(onnx_embedder: OnnxMiniLMEmbedder) -> None:
    ours = np.stack([onnx_embedder.embed([text])[0] for text in TEXTS])
    theirs = models.embedder().embed(TEXTS)
    assert ours.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    assert (ours * theirs).sum(axis=1).min() >= 0.9  # cosine, both int8


def test_the_installed_recogniser_never_imports_torch(onnx_embedder: OnnxMiniLMEmbedder) -> None:
    code = (
        "import json, sys\n"
        "from mtor_cli.intent import installed_recogniser\n"
        "r = installed_recogniser(); r.warm()\n"
        "got = r.recognise('could you draw me a lighthouse at dusk')\n"
        "print(json.dumps([type(r.embedder).__name__, got.intent, 'torch' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["OnnxMiniLMEmbedder", "imagine", False]
    assert type(installed_recogniser().embedder).__name__ == "OnnxMiniLMEmbedder"  # type: ignore[union-attr]

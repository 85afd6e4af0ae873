"""The Quickstart, for real: `mtor ask "Computer, tell me a joke"` on a fresh
MTOR_HOME builds SmolLM2-135M-Instruct for the ONNX runtime (once, with a
progress bar), starts the embedded realm and answers (the run itself is the
session fixture ``smollm2_quickstart``)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.slow
@pytest.mark.timeout(900)  # builds and loads a real model on 2 cores
def test_quickstart_ask_on_the_default_model(smollm2_quickstart: dict[str, Any]) -> None:
    done: subprocess.CompletedProcess[str] = smollm2_quickstart["ask"]
    home: Path = smollm2_quickstart["home"]
    assert done.returncode == 0, done.stderr
    assert "building SmolLM2-135M-Instruct for the ONNX runtime (once)" in done.stderr  # shown
    assert "dequantizing the GGUF weights" in done.stderr
    assert "starting the embedded realm at ws://127.0.0.1:" in done.stderr
    answer = done.stdout.strip()
    # A real model answers in words, not token soup (a random model's output
    # is mostly fragments and symbols). Greedy, so the answer is repeatable.
    words = re.findall(r"[A-Za-z']{2,}", answer)
    assert len(words) >= 3, answer
    assert sum(map(len, words)) >= 0.6 * len(answer.replace(" ", "")), answer
    info = json.loads(smollm2_quickstart["status"].stdout)
    assert info["runtime"] == "onnx"
    chat = [m for w in info["workers"] for c in w["capabilities"] if c["intent"] == "chat" for m in c["models"]]
    assert chat == ["smollm2-135m-instruct"]
    builds = [p for p in (home / "data" / "models" / "onnx").glob("smollm2-135m-instruct-int8-*") if p.is_dir()]
    assert len(builds) == 1 and (builds[0] / "model.onnx").is_file()
    assert not (home / "data" / "models" / "smollm2-135m-instruct").exists()  # no float32 copy kept

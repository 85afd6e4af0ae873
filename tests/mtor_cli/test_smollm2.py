"""The Quickstart, for real: `mtor ask "Computer, tell me a joke"` on a fresh
MTOR_HOME builds SmolLM2-135M-Instruct for the ONNX runtime (once, with a
progress bar), starts the embedded realm and answers."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.realm import mtor_command, process_env


@pytest.mark.slow
@pytest.mark.timeout(900)  # builds and loads a real model on 2 cores
def test_quickstart_ask_on_the_default_model(tmp_path: Path) -> None:
    # TTY_COMPATIBLE: rich draws the first-run progress bar as on a terminal.
    env = process_env(tmp_path / "home", HF_HUB_OFFLINE="1", TTY_COMPATIBLE="1")
    try:
        done = subprocess.run(
            mtor_command("ask", "--max-tokens", "48", "--temperature", "0", "Computer, tell me a joke"),
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        status = subprocess.run(
            mtor_command("realm", "status", "--json"), env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        subprocess.run(mtor_command("realm", "stop"), env=env, capture_output=True, timeout=60)
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
    info = json.loads(status.stdout)
    assert info["runtime"] == "onnx"
    served = [m for w in info["workers"] for c in w["capabilities"] for m in c["models"]]
    assert served == ["smollm2-135m-instruct"]
    builds = list((tmp_path / "home" / "data" / "models" / "onnx").glob("smollm2-135m-instruct-int8-*"))
    assert len(builds) == 1 and (builds[0] / "model.onnx").is_file()
    assert not (tmp_path / "home" / "data" / "models" / "smollm2-135m-instruct").exists()  # no fp32 copy kept

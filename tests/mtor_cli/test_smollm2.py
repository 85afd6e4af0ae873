"""The Quickstart, for real: `mtor ask "Computer, tell me a joke"` on a fresh
MTOR_HOME converts SmolLM2-135M-Instruct, starts the embedded realm and answers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.realm import mtor_command, process_env


@pytest.mark.slow
@pytest.mark.timeout(900)  # converts and loads a real model on 2 cores
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
    assert "dequantizing SmolLM2 weights" in done.stderr  # the one-time conversion, shown
    assert "starting the embedded realm at ws://127.0.0.1:" in done.stderr
    answer = done.stdout.strip()
    # A real model answers in words, not token soup (a random model's output
    # is mostly fragments and symbols). Greedy, so the answer is repeatable.
    words = re.findall(r"[A-Za-z']{2,}", answer)
    assert len(words) >= 3, answer
    assert sum(map(len, words)) >= 0.6 * len(answer.replace(" ", "")), answer
    assert "smollm2-135m-instruct" in status.stdout
    converted = tmp_path / "home" / "data" / "models" / "smollm2-135m-instruct"
    assert (converted / "model.safetensors").is_file()

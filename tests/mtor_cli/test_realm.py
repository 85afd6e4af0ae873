"""The embedded default realm: `mtor ask` with no broker starts it, later asks reuse it,
`mtor realm status/stop` manage it. A tiny chat model stands in for SmolLM2."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.realm import mtor_command, process_env


@pytest.fixture
def realm_env(tmp_path: Path, tiny_chat_model: Path) -> Iterator[dict[str, str]]:
    env = process_env(tmp_path / "home", MTOR_DEFAULT_CHAT_MODEL=str(tiny_chat_model), HF_HUB_OFFLINE="1")
    yield env
    subprocess.run(mtor_command("realm", "stop"), env=env, capture_output=True, timeout=60)


def run(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mtor_command(*args), env=env, capture_output=True, text=True, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(") ", 1)[1][:1] != "Z"


def test_ask_starts_the_embedded_realm_then_reuses_it(realm_env: dict[str, str]) -> None:
    down = run(realm_env, "realm", "status", "--json")
    assert down.returncode == 3
    assert json.loads(down.stdout)["running"] is False

    first = run(realm_env, "ask", "--temperature", "0", "--max-tokens", "8", "Computer, tell me a joke")
    assert first.returncode == 0, first.stderr
    assert "starting the embedded realm at ws://127.0.0.1:" in first.stderr
    assert first.stdout.strip()

    up = run(realm_env, "realm", "status", "--json")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert info["running"] is True and info["url"].startswith("ws://127.0.0.1:")
    assert any(c["intent"] == "chat" for w in info["workers"] for c in w["capabilities"])
    assert Path(info["log"]).is_file() and Path(info["journal"]).is_file()

    again = run(realm_env, "ask", "--json", "--temperature", "0", "--max-tokens", "8", "Computer, tell me a joke")
    assert again.returncode == 0, again.stderr
    assert "starting" not in again.stderr
    assert json.loads(again.stdout)["text"] + "\n" == first.stdout

    stopped = run(realm_env, "realm", "stop")
    assert stopped.returncode == 0
    assert "stopped" in stopped.stderr
    assert not _alive(info["pid"])
    assert run(realm_env, "realm", "status").returncode == 3


def test_realm_that_cannot_load_its_model_fails_clearly(realm_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(realm_env, MTOR_DEFAULT_CHAT_MODEL=str(tmp_path / "no-such-model"))
    result = run(env, "ask", "hello")
    assert result.returncode == 3
    line = result.stderr.strip().splitlines()[-1]
    assert "[realm_failed]" in line and "realm.log" in line
    assert run(env, "realm", "status").returncode == 3

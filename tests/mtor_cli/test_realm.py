"""The embedded default realm: `mtor ask` with no broker starts it, later asks reuse it,
`mtor realm status/stop` manage it. A tiny chat model stands in for SmolLM2."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.realm import mtor_command, process_env, stop_process, wait_until


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


@pytest.mark.timeout(600)  # several processes, each importing torch
def test_ask_starts_the_embedded_realm_then_reuses_it(realm_env: dict[str, str]) -> None:
    down = run(realm_env, "realm", "status", "--json")
    assert down.returncode == 3
    assert json.loads(down.stdout)["running"] is False

    # Two asks at once on a fresh machine: one starts the realm, both are answered.
    args = ["ask", "--temperature", "0", "--max-tokens", "8", "Computer, tell me a joke"]
    both = [
        subprocess.Popen(mtor_command(*args), env=realm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [proc.communicate(timeout=300) for proc in both]
    assert [proc.returncode for proc in both] == [0, 0], outcomes
    starters = [err for _, err in outcomes if "starting the embedded realm at ws://127.0.0.1:" in err]
    assert len(starters) == 1
    first_out = outcomes[0][0]
    assert first_out.strip() and outcomes[1][0] == first_out

    up = run(realm_env, "realm", "status", "--json")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert info["running"] is True and info["url"].startswith("ws://127.0.0.1:")
    assert any(c["intent"] == "chat" for w in info["workers"] for c in w["capabilities"])
    assert Path(info["log"]).is_file() and Path(info["journal"]).is_file()

    again = run(realm_env, "ask", "--json", "--temperature", "0", "--max-tokens", "8", "Computer, tell me a joke")
    assert again.returncode == 0, again.stderr
    assert "starting" not in again.stderr
    assert json.loads(again.stdout)["text"] + "\n" == first_out

    # "Say hello" matches the tts rule, and the embedded realm serves tts on this
    # machine: a spoken hello. The chat options ride as chat's, never reaching tts.
    wav = Path(realm_env["MTOR_HOME"]) / "hello.wav"
    args = ["ask", "--json", "--explain", "--temperature", "0", "--max-tokens", "8", "--out", str(wav), "Say hello"]
    hello = run(realm_env, *args)
    assert hello.returncode == 0, hello.stderr
    assert json.loads(hello.stdout)["intent"] == "tts" and wav.read_bytes()[:4] == b"RIFF"
    assert "tts <- rule:tts:verb" in hello.stderr

    # `mtor worker serve` without --broker joins this realm, as the no_worker hint says.
    worker = subprocess.Popen(
        mtor_command("worker", "serve", "--intent", "echo", "--name", "joined"),
        env=realm_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(
            lambda: any(w.get("name") == "joined" for w in json.loads(run(realm_env, "realm", "status", "--json").stdout)["workers"]),
            60,
            "the worker to join the embedded realm",
        )
    finally:
        stop_process(worker)  # type: ignore[arg-type]

    # `realm start` on a running realm changes nothing and says where it is.
    noop = run(realm_env, "realm", "start", "--json")
    assert noop.returncode == 0, noop.stderr
    assert json.loads(noop.stdout)["url"] == info["url"] and "starting" not in noop.stderr

    stopped = run(realm_env, "realm", "stop")
    assert stopped.returncode == 0
    assert "stopped" in stopped.stderr
    assert not _alive(info["pid"])
    assert run(realm_env, "realm", "status").returncode == 3

    # Started again, it listens where it did before: workers and dashboards find it.
    restarted = run(realm_env, "realm", "start", "--json")
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["url"] == info["url"]
    logs = run(realm_env, "realm", "logs", "-n", "5")
    assert logs.returncode == 0 and "chat worker serving" in run(realm_env, "realm", "logs", "-n", "1000").stdout


def test_realm_that_cannot_load_its_model_fails_clearly(realm_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(realm_env, MTOR_DEFAULT_CHAT_MODEL=str(tmp_path / "no-such-model"))
    result = run(env, "ask", "hello")
    assert result.returncode == 3
    line = result.stderr.strip().splitlines()[-1]
    assert "[realm_failed]" in line and "realm.log" in line
    assert "the chat worker failed" in line and "no-such-model" in line
    assert run(env, "realm", "status").returncode == 3


@pytest.mark.timeout(600)
def test_ask_works_from_a_folder_holding_files_named_like_the_packages(
    realm_env: dict[str, str], tmp_path: Path
) -> None:
    """The user's own broker.py or worker.py must never shadow the realm's packages."""
    import shutil
    import sys

    folder = tmp_path / "my project"
    folder.mkdir()
    for name in ("broker.py", "worker.py", "ledger.py", "mtor_cli.py"):
        (folder / name).write_text('raise SystemExit("the user\'s own file was imported")\n')
    mtor = shutil.which("mtor", path=str(Path(sys.executable).parent))
    assert mtor is not None, "the mtor console script is installed beside this interpreter"
    asked = subprocess.run(
        [mtor, "ask", "--temperature", "0", "--max-tokens", "4", "hello there"],
        env=realm_env, cwd=folder, capture_output=True, text=True, timeout=300,
    )
    assert asked.returncode == 0, asked.stderr[-2000:]
    assert asked.stdout.strip()

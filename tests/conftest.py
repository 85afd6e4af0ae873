"""Fixtures every test folder shares.

- Every test runs with ``MTOR_HOME`` in a fresh tmp dir (never the real ~),
  and without ``MTOR_BROKER``; a session-wide home covers module- and
  session-scoped fixtures that run before the per-test one.
- ``tiny_chat_model``: the tiny random chat model (tests/support/tiny_models.py),
  built once per session; ``tiny_onnx_model``: the same model through the
  ONNX builder (what the chat backend serves on CPU), built once per session;
  ``diffusion_dir``, ``captioner_dir`` and ``speech_wav``: the tiny media models
  and a spoken question (tests/support/tiny_media_models.py).
- ``smollm2_quickstart``: the README's Quickstart run once per session on a
  fresh MTOR_HOME (it builds the shipped SmolLM2 for the ONNX runtime, which
  the slower SmolLM2 tests then reuse instead of building it again).
- ``postgres_server`` / ``redis_server``: a throwaway PostgreSQL and Redis for
  the session (tests/support/engines.py), started the first time a test asks;
  ``pg_database``: a fresh, migrated database on it for one test.

Builders (a realm in a thread, broker/worker subprocesses) live in
tests/support/, not here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import tiny_media_models


@pytest.fixture(scope="session", autouse=True)
def _session_mtor_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("mtor-session-home")
    saved = {key: os.environ.get(key) for key in ("MTOR_HOME", "MTOR_BROKER")}
    os.environ["MTOR_HOME"] = str(home)
    os.environ.pop("MTOR_BROKER", None)
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def mtor_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's MTOR_HOME (config/ and data/ are created under it on use)."""
    home = tmp_path / "mtor-home"
    monkeypatch.setenv("MTOR_HOME", str(home))
    monkeypatch.delenv("MTOR_BROKER", raising=False)
    return home


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny random Llama chat model with a chat template (built once)."""
    from tests.support.tiny_models import tiny_chat_model_path

    return tiny_chat_model_path(tmp_path_factory)


@pytest.fixture(scope="session")
def diffusion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_media_models.build_diffusion(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def captioner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_media_models.build_captioner(tmp_path_factory.mktemp("models") / "tiny-captioner")


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_media_models.speak_wav(
        "Imagine a neon mountain under a purple sky", tmp_path_factory.mktemp("audio") / "question.wav"
    )


@pytest.fixture(scope="session")
def tiny_onnx_build(tiny_chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """The tiny chat model built into an int8 ONNX model by the real builder (once):
    (the MTOR_HOME it was built in, the build folder, the progress labels shown)."""
    from worker.onnx_build import ensure_onnx_model

    home = tmp_path_factory.mktemp("onnx-build-home")
    labels: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTOR_HOME", str(home))
        folder = ensure_onnx_model(str(tiny_chat_model), progress=lambda done, total, label: labels.append(label))
    return home, folder, labels


@pytest.fixture(scope="session")
def tiny_onnx_model(tiny_onnx_build: tuple[Path, Path, list[str]]) -> Path:
    """The folder of the tiny chat model's int8 ONNX build."""
    return tiny_onnx_build[1]


@pytest.fixture(scope="session")
def smollm2_quickstart(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """`mtor ask "Computer, tell me a joke"` on a fresh home: {home, ask, status} (CompletedProcesses)."""
    import subprocess

    from tests.support.realm import mtor_command, process_env

    home = tmp_path_factory.mktemp("quickstart") / "home"
    # TTY_COMPATIBLE: rich draws the first-run progress bar as on a terminal.
    env = process_env(home, HF_HUB_OFFLINE="1", TTY_COMPATIBLE="1")
    try:
        ask = subprocess.run(
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
    return {"home": home, "ask": ask, "status": status}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    from tests.support.engines import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    from tests.support.engines import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture
def pg_database(postgres_server: Any) -> str:
    """The URL of a fresh database with the broker's schema."""
    import asyncio

    from broker.migrations import migrate_postgres

    url = postgres_server.create_database()
    asyncio.run(migrate_postgres(url))
    return str(url)

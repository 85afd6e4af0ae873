"""Tiny media models, built once per session, and a realm that serves them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import tiny_media_models as tiny


@pytest.fixture(autouse=True)
def mtor_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "mtor-home"
    monkeypatch.setenv("MTOR_HOME", str(home))
    monkeypatch.delenv("MTOR_BROKER", raising=False)
    return home


@pytest.fixture(scope="session")
def diffusion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_diffusion(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def captioner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_captioner(tmp_path_factory.mktemp("models") / "tiny-captioner")


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.speak_wav(
        "Imagine a neon mountain under a purple sky", tmp_path_factory.mktemp("audio") / "question.wav"
    )


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """MTOR_HOME for module-scoped realms (the per-test one comes too late for them)."""
    home = tmp_path_factory.mktemp("realm-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTOR_HOME", str(home))
        yield home

"""A realm that serves the tiny media models (built once per session in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def mtor_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "mtor-home"
    monkeypatch.setenv("MTOR_HOME", str(home))
    monkeypatch.delenv("MTOR_BROKER", raising=False)
    return home


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """MTOR_HOME for module-scoped realms (the per-test one comes too late for them)."""
    home = tmp_path_factory.mktemp("realm-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTOR_HOME", str(home))
        yield home

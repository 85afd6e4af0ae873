"""Fixtures for the worker's tests: a tmp MTOR_HOME, a key, the tiny chat model."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from tests.support.tiny_models import tiny_chat_model_path


@pytest.fixture(autouse=True)
def mtor_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "mtor-home"
    monkeypatch.setenv("MTOR_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_chat_model_path(tmp_path_factory)


@pytest.fixture
def account():  # type: ignore[no-untyped-def]
    return Account.create()

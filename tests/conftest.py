"""Fixtures every test folder shares.

- Every test runs with ``MTOR_HOME`` in a fresh tmp dir (never the real ~),
  and without ``MTOR_BROKER``; a session-wide home covers module- and
  session-scoped fixtures that run before the per-test one.
- ``tiny_chat_model``: the tiny random chat model (tests/support/tiny_models.py),
  built once per session.
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

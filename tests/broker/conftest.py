from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broker import BrokerConfig, BrokerServer


@pytest.fixture(autouse=True)
def mtor_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "mtor-home"
    monkeypatch.setenv("MTOR_HOME", str(home))
    return home


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.fixture
def store(db_path: Path) -> dict[str, Any]:
    """Where brokers keep their journal: a SQLite file here; modules whose
    tests hold for every store override it with :func:`both_stores`."""
    return {"db_path": db_path}


def both_stores(request: pytest.FixtureRequest, db_path: Path) -> dict[str, Any]:
    """``store`` for a module parametrized over SQLite and PostgreSQL:
    ``store = pytest.fixture(params=STORES)(both_stores)``."""
    if request.param == "sqlite":
        return {"db_path": db_path}
    return {"db_path": db_path, "db_url": request.getfixturevalue("pg_database")}


STORES = ["sqlite", "postgresql"]


@pytest.fixture
async def make_broker(store: dict[str, Any]) -> AsyncIterator[Callable[..., Awaitable[BrokerServer]]]:
    """Start a broker on a free port with a real journal (``store``); stopped after the test."""
    started: list[BrokerServer] = []

    async def make(billing: Any = None, recogniser: Any = None, money: Any = None, **overrides: Any) -> BrokerServer:
        settings: dict[str, Any] = {"port": 0, "heartbeat_s": 0.2, "stats_interval_s": 0.05, **store}
        settings.update(overrides)
        server = BrokerServer(BrokerConfig(**settings), billing=billing, money=money, recogniser=recogniser)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        if server._runner is not None:
            await server.stop()


@pytest.fixture
async def broker(make_broker: Callable[..., Awaitable[BrokerServer]]) -> BrokerServer:
    return await make_broker()


async def get_json(server: BrokerServer, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(server.http_url + path) as resp:
        assert resp.status == 200
        return await resp.json()

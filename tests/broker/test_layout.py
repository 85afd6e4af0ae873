"""The broker's parts are built in one place and depend on each other in one direction."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_cycles", REPO / "scripts" / "import_cycles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_circle_longer_than_a_pair() -> None:
    script = _script()
    for package in ("broker", "worker", "mtor_cli", "ledger"):
        cycles = script.cycles(script.module_imports(REPO / package))
        assert all(len(group) <= 2 for group in cycles), f"{package}: {cycles}"


def test_only_the_server_knows_the_server_and_only_handlers_get_the_parts() -> None:
    graph = _script().module_imports(REPO / "broker")
    uses_server = sorted(m for m, deps in graph.items() if "broker.server" in deps)
    assert uses_server == []
    uses_parts = sorted(m for m, deps in graph.items() if "broker.parts" in deps)
    assert uses_parts == [
        "broker.account_rest",
        "broker.client_session",
        "broker.money_rest",
        "broker.rest",
        "broker.server",
        "broker.worker_session",
    ]

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


def test_one_error_type_everywhere() -> None:
    """Errors people see carry ``code, message, hint`` through MtorError
    (broker.protocol), never through a copy of its fields."""
    import ast

    copies = []
    for package in ("broker", "worker", "mtor_cli", "ledger"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ClassDef) or node.name == "MtorError":
                    continue
                sets_hint = any(
                    isinstance(target, ast.Attribute) and target.attr == "hint"
                    and isinstance(target.value, ast.Name) and target.value.id == "self"
                    for sub in ast.walk(node) if isinstance(sub, ast.Assign) for target in sub.targets
                )  # fmt: skip
                if sets_hint:
                    copies.append(f"{path.relative_to(REPO)}:{node.name}")
    assert copies == []

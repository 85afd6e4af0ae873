"""Print the import cycles inside a package, from its source (no import runs).

Every ``import``/``from ... import`` of a sibling module counts, type-only
ones (under ``if TYPE_CHECKING:``) included: a type-only reference to a whole
object is still a dependency a reader has to follow. A cycle is a strongly
connected group of two or more modules.

    python scripts/import_cycles.py broker
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_imports(package: Path) -> dict[str, set[str]]:
    """For each module of ``package`` (by dotted name), the sibling modules it imports."""
    name = package.name
    modules = {f"{name}.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        if path.stem == "__init__":
            continue
        here = f"{name}.{path.stem}"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
                if node.module in modules:
                    deps.add(node.module)
                elif node.module == name:  # from broker import journal
                    deps.update(f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in modules)
        deps.discard(here)
        graph[here] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules, largest first (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups, key=lambda g: (-len(g), g))


def main(argv: list[str]) -> int:
    package = Path(argv[1] if len(argv) > 1 else "broker")
    found = cycles(module_imports(package))
    print(f"{package.name}: {len(found)} import cycle(s)")
    for group in found:
        print(f"  {len(group)} modules: {', '.join(group)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

"""The rooms of the house depend one way (docs/architecture.md): no import cycle.

A cycle between modules is how a layering decision quietly stops holding
(the cache reaching into ADC, a source reaching back into the cache), so both
trees are checked: the Python package by its imports, the Rust crate by its
`crate::` paths outside test code.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "python" / "adk_token_exchange"
CRATE = ROOT / "src"


def _cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def _python_graph() -> dict[str, set[str]]:
    def name(path: Path) -> str:
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                subs = [f"{base}.{a.name}" for a in node.names]
                targets = [s for s in subs if s in modules] or [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                # A submodule importing its own package's __init__ is how a
                # package re-exports; it is not a dependency of the package.
                if target in modules and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def _rust_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in CRATE.rglob("*.rs"):
        if path.name in ("tests.rs", "testing.rs"):
            continue  # test-only modules (#[cfg(test)] in their parent)
        room = path.relative_to(CRATE).with_suffix("").parts[0]
        text = path.read_text(encoding="utf-8").split("#[cfg(test)]", 1)[0]
        deps = {d for d in re.findall(r"crate::([a-z_]+)", text) if d != room}
        graph.setdefault(room, set()).update(deps)
    return graph


def test_the_python_package_imports_one_way() -> None:
    graph = _python_graph()
    assert "adk_token_exchange._adk.install" in graph, "the walk found the package"
    assert _cycles(graph) == []


def test_the_rust_crate_depends_one_way() -> None:
    graph = _rust_graph()
    assert {"cache", "sources", "adc", "bindings"} <= graph.keys(), "the walk found the crate"
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []

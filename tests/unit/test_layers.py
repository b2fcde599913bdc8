"""The package import graph of soar_orl has no cycle.

Nodes are the subpackages (`soar_orl.eval`, ...) and the top-level modules (`soar_orl.config`,
...); an edge is any import of one node by a module of another, wherever it stands: at module
level, inside a function, or under `if TYPE_CHECKING:` (a lazy or type-only import hides a cycle
from Python, not from a reader). Read from the source with `ast`: nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import soar_orl

PACKAGE_ROOT = Path(soar_orl.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _node(module: str) -> str | None:
    """The graph node of a soar_orl module: its subpackage or top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "soar_orl" and len(parts) > 1 else None


def _imported_modules(path: Path, module: str) -> list[tuple[str, int]]:
    """Every module named by an import statement of `path`, with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for statement in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(statement, ast.Import):
            found += [(alias.name, statement.lineno) for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom):
            if statement.level:
                base = package.split(".")[: len(package.split(".")) - statement.level + 1]
                source = ".".join(base + ([statement.module] if statement.module else []))
            else:
                source = statement.module or ""
            # `from soar_orl import config` imports the module config, not a name of soar_orl.
            found += [(f"{source}.{alias.name}", statement.lineno) for alias in statement.names]
            found.append((source, statement.lineno))
    return found


def package_graph() -> dict[str, dict[str, list[str]]]:
    """node -> imported node -> the import statements that make the edge ("module:line")."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        module = _module_name(path)
        source = _node(module)
        if source is None:
            continue
        edges = graph.setdefault(source, {})
        for imported, line in _imported_modules(path, module):
            target = _node(imported)
            if target is not None and target != source:
                where = f"{module}:{line}"
                if where not in edges.setdefault(target, []):
                    edges[target].append(where)
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of the graph as a node list (first node repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the depth-first path, then "done"
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def describe(graph: dict[str, dict[str, list[str]]], cycle: list[str]) -> str:
    lines = [" -> ".join(cycle)]
    for source, target in zip(cycle, cycle[1:]):
        lines.append(f"  {source} -> {target}: {', '.join(graph[source][target])}")
    return "\n".join(lines)


def test_the_package_import_graph_has_no_cycle() -> None:
    graph = package_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "package import cycle:\n" + describe(graph, cycle)


def test_the_graph_sees_every_kind_of_import(tmp_path) -> None:
    # The checker itself: a cycle made only by a function-level import and a TYPE_CHECKING one.
    graph = {"a": {"b": ["a.x:3"]}, "b": {"c": ["b.y:9"]}, "c": {"a": ["c.z:1"]}, "d": {"a": ["d:1"]}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": []}, "b": {}}) is None
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from soar_orl.config import SoarConfig\n"
        "def f():\n    import soar_orl.eval.passk\n    from . import sibling\n"
    )
    imported = {name for name, _ in _imported_modules(source, "soar_orl.tasks.m")}
    assert {"soar_orl.config", "soar_orl.eval.passk", "soar_orl.tasks.sibling"} <= imported
    assert "soar_orl.meta" in package_graph()  # the real tree is read

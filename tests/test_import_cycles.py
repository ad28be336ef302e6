"""No package of app/ imports a package that imports it back (docs/architecture.md).

Walks every module's imports (module level and inside functions alike: a lazy import
is still a dependency) and fails on any cycle between units, a unit being a
subpackage (app.windows) or a top-level module (app.db).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "app" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def _module_name(path: Path) -> str:
    rel = path.relative_to(APP.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # `from app import windows` imports the subpackage app.windows.
            found.update(f"{target}.{a.name}" for a in node.names)
    return found


def _exists(unit: str) -> bool:
    path = APP.parent / unit.replace(".", "/")
    return path.is_dir() or path.with_suffix(".py").is_file()


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in APP.rglob("*.py"):
        source = _unit(_module_name(path)) if _module_name(path) != "app" else None
        if source is None:
            continue
        for target in _imports(path):
            unit = _unit(target)
            if (
                unit is not None
                and unit != source
                and (APP.parent / unit.replace(".", "/")).exists()
            ) or (
                unit is not None
                and unit != source
                and (APP.parent / (unit.replace(".", "/") + ".py")).exists()
            ):
                graph[source].add(unit)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read() -> None:
    graph = unit_graph()
    # A walker that found nothing would pass vacuously.
    assert "app.windows" in graph["app.alerting"] or "app.metrics" in graph["app.windows"]


def test_no_import_cycle_between_packages() -> None:
    graph = unit_graph()
    found = cycles(graph)
    detail = [
        " -> ".join(c)
        + "  ("
        + "; ".join(f"{a} imports {sorted(graph[a] & set(c))}" for a in c)
        + ")"
        for c in found
    ]
    assert not found, "import cycles between app packages:\n" + "\n".join(detail)


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

"""The package's imports: no circles, and the layers import one way.

Every import counts, also one inside a function or under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ringback

PACKAGE = Path(ringback.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("ringback", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _graph() -> dict[str, set[str]]:
    """module -> the ringback modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def _imports_of(graph: dict[str, set[str]], package: str) -> set[tuple[str, str]]:
    return {
        (module, target)
        for module, targets in graph.items()
        if module == package or module.startswith(package + ".")
        for target in targets
    }


def test_no_import_circles() -> None:
    assert _circles(_graph()) == []


def test_the_http_api_does_not_import_the_composition_root() -> None:
    bad = {
        (m, t)
        for m, t in _imports_of(_graph(), "ringback.api")
        if t in ("ringback.server", "ringback.cli", "ringback.demo")
    }
    assert bad == set()


def test_the_registry_imports_only_the_registry() -> None:
    bad = {
        (m, t)
        for m, t in _imports_of(_graph(), "ringback.registry")
        if not t.startswith("ringback.registry")
    }
    assert bad == set()

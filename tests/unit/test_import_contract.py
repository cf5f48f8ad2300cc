"""The package's shape, guarded: cores import no layer above them, and no import circles.

The cores (`sip`, `media`, `registry`, `calls`) are sans-I/O; `net`, `api`, `server`, `cli`
and `demo` are shells around them. Every `import` in `src/ringback` (including those inside
functions and under ``TYPE_CHECKING``) is read with :mod:`ast`, so an import cannot hide.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
SHELLS = {"net", "api", "server", "cli", "demo", "__main__"}
# What each core may not import: the shells, and the cores above it.
FORBIDDEN: dict[str, set[str]] = {
    "sip": SHELLS | {"media", "registry", "calls"},
    "media": SHELLS | {"registry", "calls"},
    "registry": SHELLS | {"sip", "media", "calls"},
    "calls": SHELLS,
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str, is_package: bool) -> Iterator[str]:
    """Every module `module` imports, resolved to absolute names."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            yield prefix
            for alias in node.names:
                yield f"{prefix}.{alias.name}"


def graph(root: Path, top: str = "ringback") -> dict[str, set[str]]:
    """Module → the modules of the package it imports."""
    files = {module_name(p, root): p for p in (root / top).rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for name in imports_of(path, module, path.name == "__init__.py"):
            if name in files and name != module:
                targets.add(name)
        edges[module] = targets
    return edges


def layer_violations(edges: dict[str, set[str]], top: str = "ringback") -> list[str]:
    out = []
    for module, targets in sorted(edges.items()):
        parts = module.split(".")
        core = parts[1] if len(parts) > 1 else ""
        for target in sorted(targets):
            tparts = target.split(".")
            if len(tparts) > 1 and tparts[1] in FORBIDDEN.get(core, set()):
                out.append(f"{module} imports {target}")
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cores_import_no_layer_above_them() -> None:
    assert layer_violations(graph(SRC)) == []


def test_no_import_circles() -> None:
    assert cycles(graph(SRC)) == []


def test_api_never_imports_the_composition_root() -> None:
    edges = graph(SRC)
    assert not [
        m for m, t in edges.items() if m.startswith("ringback.api") and "ringback.server" in t
    ]


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "ringback" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "bad",
    [
        "from ringback.net import shell\n",
        "import ringback.server\n",
        "def f():\n    from ringback.api import app\n",  # hidden in a function
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ringback.cli import main\n",
    ],
)
def test_the_guard_catches_a_core_importing_a_shell(tmp_path: Path, bad: str) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "sip/__init__.py": "",
            "sip/parser.py": bad,
            "net/__init__.py": "",
            "net/shell.py": "",
            "api/__init__.py": "",
            "api/app.py": "",
            "server.py": "",
            "cli.py": "def main(): ...\n",
        },
    )
    assert layer_violations(graph(root)) == [
        f"ringback.sip.parser imports {t}"
        for t in {
            "from ringback.net import shell\n": ["ringback.net", "ringback.net.shell"],
            "import ringback.server\n": ["ringback.server"],
            "def f():\n    from ringback.api import app\n": ["ringback.api", "ringback.api.app"],
        }.get(bad, ["ringback.cli"])
    ]


def test_the_guard_catches_a_circle(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": "from .c import x\n",
            "c.py": "import ringback.a\nx = 1\n",
        },
    )
    assert cycles(graph(root)) == [["ringback.a", "ringback.b", "ringback.c"]]

"""The SIP core imports no other ringback layer, and its modules import no circle."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import ringback.sip

SIP = Path(ringback.sip.__file__).parent


def _imports(path: Path) -> set[str]:
    """Absolute names of the ringback modules ``path`` imports."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                out.add(f"ringback.sip.{node.module}" if node.module else "ringback.sip")
            elif node.module:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {name for name in out if name.split(".")[0] == "ringback"}


def test_sip_imports_only_itself_and_the_standard_library() -> None:
    for path in SIP.glob("*.py"):
        for name in _imports(path):
            # _fastsip: the compiled scans and tags, a leaf (C, imports no Python module)
            assert name.startswith("ringback.sip") or name == "ringback._fastsip", (
                f"{path.name} imports {name}"
            )
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                top = node.module.split(".")[0]
                assert top in sys.stdlib_module_names or top in ("ringback", "__future__"), (
                    f"{path.name} imports {node.module}"
                )


def test_no_import_circles_inside_sip() -> None:
    graph = {
        f"ringback.sip.{path.stem}": _imports(path) - {"ringback.sip"}
        for path in SIP.glob("*.py")
        if path.stem != "__init__"
    }
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for dep in graph.get(module, ()):
            visit(dep, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())

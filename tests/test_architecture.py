"""The architecture as tests: the import directions between the rooms of ``edgesiam/`` and the
absence of import cycles, read from the source with ``ast`` (no module is executed).

The heavy-library boundary of the device install is checked separately, in a fresh interpreter, by
``test_import_boundaries.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support.imports import imported_names, module_name, write_sources

PACKAGE = Path(__file__).resolve().parents[1] / "edgesiam"

# (room, rooms it must never import); a room is the first name under the package.
FORBIDDEN = (
    ("runtime", ("dashboard", "tools", "train", "export")),
    ("dashboard", ("runtime",)),
    ("mqtt", ("runtime", "dashboard", "tools", "train", "export")),
)
# core is pure: it may import only itself and the exception module.
CORE_MAY_IMPORT = ("core", "errors")


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the modules of the same package it imports: ``from pkg import mod`` means
    ``pkg.mod`` when that is a module, else (a function or class of ``pkg``) ``pkg`` itself."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        pairs = imported_names(tree, module, path.name == "__init__.py")
        targets = {
            f"{base}.{name}" if f"{base}.{name}" in files else base for base, name, _ in pairs
        }
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def room(module: str) -> str:
    """The first name below the package: ``edgesiam.runtime.mqtt`` → ``runtime``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def direction_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that points the wrong way, as ``importer -> imported``."""
    wrong: list[str] = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if room(module) == "core" and room(target) not in CORE_MAY_IMPORT:
                wrong.append(f"{module} -> {target}")
            for source, never in FORBIDDEN:
                if room(module) == source and room(target) in never:
                    wrong.append(f"{module} -> {target}")
    return wrong


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other (strongly connected components of more than
    one module), each sorted; empty when the graph has no cycle."""
    reach = {module: reachable(graph, module) for module in graph}
    groups = {
        tuple(sorted({m, *(n for n in reach[m] if m in reach[n])}))
        for m in graph
        if any(m in reach[n] for n in reach[m])
    }
    return sorted(list(group) for group in groups)


def write_package(root: Path, files: dict[str, str]) -> Path:
    """A small synthetic package ``edgesiam`` below ``root`` for testing the checker itself."""
    return write_sources(root / "edgesiam", {"__init__.py": "", **files}, packages=True)


def test_edgesiam_imports_point_only_down_the_layout() -> None:
    assert direction_violations(import_graph(PACKAGE)) == []


def test_edgesiam_has_no_import_cycle() -> None:
    assert import_cycles(import_graph(PACKAGE)) == []


def test_checker_finds_a_runtime_to_dashboard_import(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "dashboard/server.py": "X = 1\n",
            "runtime/app.py": "from edgesiam.dashboard.server import X\n",
        },
    )
    assert direction_violations(import_graph(package)) == [
        "edgesiam.runtime.app -> edgesiam.dashboard.server"
    ]


def test_checker_finds_core_importing_outside_itself(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "errors.py": "",
            "settings.py": "",
            "core/frontend.py": "from edgesiam import errors\nfrom ..settings import X\n",
        },
    )
    assert direction_violations(import_graph(package)) == [
        "edgesiam.core.frontend -> edgesiam.settings"
    ]


def test_checker_finds_a_cycle_through_a_lazy_relative_import(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "mqtt/client.py": "from edgesiam.mqtt import publisher\n",
            "mqtt/publisher.py": "def f():\n    from .client import g\n",
            "mqtt/contract.py": "from . import client\n",
        },
    )
    assert import_cycles(import_graph(package)) == [
        ["edgesiam.mqtt.client", "edgesiam.mqtt.publisher"]
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import edgesiam.core.frontend\n", {"edgesiam.core.frontend"}),
        ("from edgesiam.core import frontend\n", {"edgesiam.core.frontend"}),
        ("from ..core.frontend import LogMel\n", {"edgesiam.core.frontend"}),
        ("import numpy\n", set()),
    ],
)
def test_import_graph_resolves_each_import_form(
    tmp_path: Path, source: str, expected: set[str]
) -> None:
    package = write_package(
        tmp_path, {"core/frontend.py": "", "runtime/app.py": source, "core/__init__.py": ""}
    )
    assert import_graph(package)["edgesiam.runtime.app"] == expected


def exception_classes(root: Path) -> dict[str, list[str]]:
    """Module → the classes it defines whose bases name an exception (``…Error``, ``Exception``
    or a class of ``edgesiam.errors``)."""
    known = {"Exception", "ValueError", "ImportError", "RuntimeError", "OSError", "KeyError"}
    errors_tree = ast.parse((root / "errors.py").read_text(encoding="utf-8"))
    known |= {n.name for n in ast.walk(errors_tree) if isinstance(n, ast.ClassDef)}
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and (b.id in known or b.id.endswith("Error"))
                for b in node.bases
            ):
                found.setdefault(module_name(path, root), []).append(node.name)
    return found


def test_every_exception_class_lives_in_errors_and_is_drawn_in_its_tree() -> None:
    import edgesiam.errors

    found = exception_classes(PACKAGE)
    assert set(found) == {"edgesiam.errors"}
    doc = edgesiam.errors.__doc__ or ""
    public = [name for name in found["edgesiam.errors"] if not name.startswith("_")]
    drawn = set(re.findall(r"── (\w+)", doc))
    assert set(public) == drawn


def test_exception_checker_finds_a_class_outside_errors(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "errors.py": "class EdgesiamError(Exception):\n    pass\n",
            "runtime/app.py": "class Full(EdgesiamError):\n    pass\nclass Fine:\n    pass\n",
        },
    )
    assert exception_classes(package) == {
        "edgesiam.errors": ["EdgesiamError"],
        "edgesiam.runtime.app": ["Full"],
    }

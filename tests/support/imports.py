"""What a module imports: read from source with ``ast`` (no module is executed), for the
architecture tests of ``edgesiam/`` and the layout test of ``tests/`` (tried on synthetic trees),
or observed in a fresh interpreter, for the heavy-library boundary of the device install."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple


class Imported(NamedTuple):
    """One name an import statement brings in: ``import a.b`` is ``("a.b", "", line)``."""

    module: str
    name: str
    line: int


def module_name(path: Path, root: Path) -> str:
    """Dotted name of a source file below ``root`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[Imported]:
    """Every name an import statement in ``tree`` brings in, relative imports resolved; lazy
    imports inside functions count, they are dependencies all the same."""
    names: list[Imported] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(Imported(alias.name, "", node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.extend(Imported(base, alias.name, node.lineno) for alias in node.names)
    return names


def write_sources(folder: Path, files: dict[str, str], packages: bool = False) -> Path:
    """Source files below ``folder`` (name → text), to try a checker on a synthetic tree;
    ``packages``: each folder gets an ``__init__.py`` as well."""
    for name, source in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(folder).parents if packages else ():
            (folder / parent / "__init__.py").touch()
        path.write_text(source, encoding="utf-8")
    return folder


HEAVY = ("torch", "tensorflow", "librosa", "matplotlib", "scipy", "sklearn", "safetensors")
"""The workstation libraries: the device install has none of them."""


def imported_after(statement: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running ``statement``."""
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in json.loads(done.stdout)}

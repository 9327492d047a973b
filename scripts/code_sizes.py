"""Print the sizes that show whether the package layout stays readable.

Lines per file of ``edgesiam/runtime/`` (and its total), the ten largest files and the ten longest
functions of ``edgesiam/``. Run it on two commits to compare a refactor's before and after.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def line_count(path: Path) -> int:
    """Lines in a file, as ``wc -l`` counts them."""
    return len(path.read_text(encoding="utf-8").splitlines())


def functions(path: Path, root: Path) -> list[tuple[int, str]]:
    """(length, qualified name) of every function and method in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    rel = path.relative_to(root).as_posix()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
            found.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.lineno} {node.name}"))
    return found


def report(root: Path, top: int) -> str:
    """The three tables as plain text."""
    package = root / "edgesiam"
    files = sorted(package.rglob("*.py"))
    out = ["runtime/ (lines per file)"]
    runtime = [
        (line_count(f), f.relative_to(root).as_posix()) for f in files if "runtime" in f.parts
    ]
    out += [f"  {n:6d}  {name}" for n, name in sorted(runtime, reverse=True)]
    out.append(f"  {sum(n for n, _ in runtime):6d}  total in {len(runtime)} files")
    out.append(f"{top} largest files in edgesiam/")
    sizes = sorted(((line_count(f), f.relative_to(root).as_posix()) for f in files), reverse=True)
    out += [f"  {n:6d}  {name}" for n, name in sizes[:top]]
    out.append(f"{top} longest functions in edgesiam/")
    longest = sorted((fn for f in files for fn in functions(f, root)), reverse=True)
    out += [f"  {n:6d}  {name}" for n, name in longest[:top]]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--top", type=int, default=10, help="rows in the largest-files tables")
    args = parser.parse_args()
    print(report(args.root, args.top))


if __name__ == "__main__":
    main()

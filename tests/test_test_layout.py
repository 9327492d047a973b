"""The layout of ``tests/`` as a test: helpers that tests share live in ``tests/support/`` and are
imported from there. A conftest module holds fixtures and hooks, which pytest finds by itself, so
nothing imports one (an import would load it a second time, under another name, with its fixtures);
nor does anything import a test module (its tests and fixtures would come along with the helper).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.imports import imported_names, module_name, write_sources

TESTS = Path(__file__).resolve().parent

DOTTED_NAME = re.compile(r"^(\w+\.)+\w+$")
"""A module named in a string (``importlib.import_module``, ``pytest_plugins``, …)."""

Kind = Callable[[str], bool]


def is_conftest(module: str) -> bool:
    return module.rpartition(".")[2] == "conftest"


def is_test_module(module: str) -> bool:
    """A module pytest collects tests from: its helpers belong in ``tests/support/``."""
    return module.rpartition(".")[2].startswith("test_")


def imports_in(path: Path, root: Path, kind: Kind) -> set[str]:
    """``FILE:LINE MODULE`` for each import of a module of this ``kind`` in one file: import
    statements (absolute or relative, at the top or inside a function) and dotted names in strings."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(root.parent).as_posix()
    found: set[str] = set()
    for module, name, line in imported_names(
        tree, module_name(path, root), path.stem == "__init__"
    ):
        target = module if kind(module) else f"{module}.{name}"
        if kind(target):
            found.add(f"{where}:{line} {target}")
    for node in ast.walk(tree):
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and DOTTED_NAME.match(text) and kind(text):
            found.add(f"{where}:{node.lineno} {text}")
    return found


def imports_of(root: Path, kind: Kind) -> list[str]:
    """Every import of a module of this ``kind`` by a file below ``root``, sorted."""
    return sorted(hit for path in root.rglob("*.py") for hit in imports_in(path, root, kind))


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """A small synthetic ``tests`` folder below ``root`` for testing the checker itself."""
    return write_sources(root / "tests", files)


def test_no_file_of_the_test_suite_imports_a_conftest_module() -> None:
    assert imports_of(TESTS, is_conftest) == []


def test_checker_finds_every_way_of_importing_a_conftest(tmp_path: Path) -> None:
    c = "conftest"  # spelled apart, so that grepping the suite for such imports finds none here
    tests = write_tree(
        tmp_path,
        {
            "conftest.py": "X = 1\n",
            "sub/conftest.py": "from ..support.signals import voice\n",
            "sub/test_a.py": f"from tests.{c} import X, Y\nimport tests.sub.conftest\n",
            "sub/test_b.py": f"def test():\n    from .{c} import Z\n",
            "sub/test_c.py": "from tests.sub import conftest, other\n",
            "test_d.py": "import importlib\nm = importlib.import_module('tests.sub.conftest')\n",
            "test_e.py": "from tests.support.signals import voice\nfrom . import conftest_notes\n",
        },
    )
    assert imports_of(tests, is_conftest) == [
        "tests/sub/test_a.py:1 tests.conftest",
        "tests/sub/test_a.py:2 tests.sub.conftest",
        "tests/sub/test_b.py:2 tests.sub.conftest",
        "tests/sub/test_c.py:1 tests.sub.conftest",
        "tests/test_d.py:2 tests.sub.conftest",
    ]


def test_no_file_of_the_test_suite_imports_a_test_module() -> None:
    assert imports_of(TESTS, is_test_module) == []


def test_checker_finds_a_helper_imported_from_a_test_module(tmp_path: Path) -> None:
    tests = write_tree(
        tmp_path,
        {
            "train/test_loop.py": "def audio_recipe(): ...\n",
            "test_cli.py": "from tests.train.test_loop import audio_recipe\n",
            "runtime/test_crash.py": "from tests.train import test_loop as recipes\n",
            "runtime/test_run.py": "from ..train.test_loop import audio_recipe\n",
            "support/recipes.py": "SMALL = 1\n",
            "train/test_distill.py": "from tests.support.recipes import SMALL\n",
        },
    )
    assert imports_of(tests, is_test_module) == [
        "tests/runtime/test_crash.py:1 tests.train.test_loop",
        "tests/runtime/test_run.py:1 tests.train.test_loop",
        "tests/test_cli.py:1 tests.train.test_loop",
    ]


def helpers_of_conftest(path: Path) -> list[str]:
    """The functions and classes a conftest module defines that are neither fixtures nor hooks:
    helpers, which belong in ``tests/support/`` where a test can import them."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
        and not node.name.startswith("pytest_")
        and not any("fixture" in ast.unparse(d) for d in node.decorator_list)
    ]


@pytest.mark.parametrize(
    "conftest", sorted(TESTS.rglob("conftest.py")), ids=lambda p: p.parent.name
)
def test_a_conftest_module_defines_only_fixtures_and_hooks(conftest: Path) -> None:
    assert helpers_of_conftest(conftest) == []


def test_helper_checker_finds_a_helper_beside_fixtures_and_hooks(tmp_path: Path) -> None:
    tests = write_tree(
        tmp_path,
        {
            "conftest.py": (
                "import pytest\n"
                "@pytest.fixture\ndef broker(): ...\n"
                "@pytest.fixture(scope='session')\ndef data(): ...\n"
                "def pytest_configure(config): ...\n"
                "def voice(seconds): ...\n"
                "class Device: ...\n"
            )
        },
    )
    assert helpers_of_conftest(tests / "conftest.py") == ["voice", "Device"]

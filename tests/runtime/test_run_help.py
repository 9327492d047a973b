"""``edgesiam run --help``: its examples name bundles that ship and parse into valid configs."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from edgesiam.runtime.run_cli import DESCRIPTION, config_from_args
from tests.support.cli import run_args

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [
    shlex.split(line.split("edgesiam run", 1)[1])
    for line in DESCRIPTION.splitlines()
    if "edgesiam run " in line
]


def test_there_are_examples_with_a_bundle() -> None:
    assert sum("--bundle" in argv for argv in EXAMPLES) >= 2


@pytest.mark.parametrize("argv", [a for a in EXAMPLES if "--bundle" in a], ids=" ".join)
def test_each_example_bundle_ships_and_the_example_validates(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = argv[argv.index("--bundle") + 1]
    assert (ROOT / bundle / "manifest.json").is_file(), f"{bundle} is not a shipped bundle"
    monkeypatch.chdir(ROOT)
    assert config_from_args(run_args(*argv)).bundle == ROOT / bundle

"""The dependency rules of the architecture, checked in a fresh interpreter.

The device install has no torch, tensorflow or librosa: every module a device uses must import
without them, and the numpy core must not even import the I/O libraries.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.imports import HEAVY, imported_after


@pytest.mark.parametrize(
    "module",
    [
        "edgesiam",
        "edgesiam.core.frontend",
        "edgesiam.core.windowing",
        "edgesiam.core.metrics",
        "edgesiam.core.baselines",
        "edgesiam.core.embedding",
        "edgesiam.core.embedder",
        "edgesiam.settings",
        "edgesiam.data.readers",
        "edgesiam.model.embedders",
        "edgesiam.evaluation",
        "edgesiam.cli",
        "edgesiam.model.bundle",
        "edgesiam.model.interpreters",
        "edgesiam.runtime.pipeline",
        "edgesiam.runtime.run_cli",
        "edgesiam.runtime.sources",
        "edgesiam.runtime.sources.base",
        "edgesiam.mqtt.publisher",
        "edgesiam.mqtt.client",
        "edgesiam.mqtt.contract",
        "edgesiam.runtime.publishers",
        "edgesiam.runtime.gallery_cli",
    ],
)
def test_device_side_modules_import_no_workstation_library(module: str) -> None:
    loaded = imported_after(f"import {module}")
    assert not loaded & set(HEAVY), f"{module} pulled in {sorted(loaded & set(HEAVY))}"


def test_core_imports_numpy_and_the_standard_library_only() -> None:
    loaded = imported_after(
        "import edgesiam.core.frontend, edgesiam.core.windowing, edgesiam.core.metrics, "
        "edgesiam.core.baselines, edgesiam.core.embedding"
    )
    assert not loaded & {"soundfile", "soxr", "paho", "pydantic", "yaml", *HEAVY}


def test_cli_help_runs_without_torch() -> None:
    """Block torch at import time: the command's help must still work (device install)."""
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['librosa'] = None; "
        "sys.modules['tensorflow'] = None; from edgesiam.cli import main; "
        "raise SystemExit(main(['--help']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "edgesiam" in done.stdout

"""This checkout as the wheel a device installs (the install-script and arm64 tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def build_wheel(out: Path) -> Path:
    """The wheel, built from a copy of the checkout (no build/ left behind) into ``out``."""
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "edgesiam", src / "edgesiam", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*cmd, "-w", str(out), str(src)], check=True, capture_output=True, timeout=600)
    (wheel,) = out.glob("edgesiam-*.whl")
    return wheel

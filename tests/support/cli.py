"""The edgesiam command as a user runs it: a fresh ``python -m edgesiam`` process."""

from __future__ import annotations

import subprocess
import sys


def run_edgesiam(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``edgesiam ARGS…`` in this interpreter's environment; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "edgesiam", *args], capture_output=True, text=True, timeout=timeout
    )

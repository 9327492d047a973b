"""TFLite's C++ logger: its "Created XNNPACK delegate" line is not printed on every command, and
whatever else it writes to stderr (warnings, errors) still reaches the user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def stderr_of(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_loading_a_bundle_prints_no_xnnpack_line() -> None:
    err = stderr_of(
        "from edgesiam.model.interpreters import load_model\n"
        "import numpy as np\n"
        "m = load_model('export/events')\n"
        "m.embed_features(np.zeros((1, *m.manifest.features), np.float32))\n"
    )
    assert "XNNPACK" not in err and "INFO:" not in err, err


def test_other_native_output_is_kept_in_order() -> None:
    err = stderr_of(
        "import os, sys\n"
        "from edgesiam.model.interpreters import _quiet_native_info\n"
        "with _quiet_native_info():\n"
        "    os.write(2, b'WARNING: first\\n')\n"
        "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "    print('ERROR: second', file=sys.stderr)\n"
        "print('after', file=sys.stderr)\n"
    )
    assert err == "WARNING: first\nERROR: second\nafter\n"

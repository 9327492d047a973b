"""The default suite is deterministic under CI; the full run (``make reliability``) explores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.fuzz_scale import DETERMINISTIC, fuzz_settings

ROOT = Path(__file__).resolve().parents[2]
PROBE = "test_the_profiles_follow_the_environment"


def test_the_profiles_follow_the_environment() -> None:
    if DETERMINISTIC:
        assert settings.default.derandomize and settings.default.database is None
        assert fuzz_settings(1).database is None
    assert fuzz_settings(1).derandomize is DETERMINISTIC
    print(f"deterministic={DETERMINISTIC}")


@pytest.mark.parametrize(
    ("env", "deterministic"),
    [
        ({"CI": "true"}, True),
        ({"CI": "true", "EDGESIAM_RELIABILITY": "full"}, False),
        ({"CI": ""}, False),
    ],
)
def test_ci_draws_the_same_examples_and_the_full_run_explores(
    env: dict[str, str], deterministic: bool
) -> None:
    environ = {**os.environ, "EDGESIAM_RELIABILITY": "", **env}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            f"{__file__}::{PROBE}",
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"deterministic={deterministic}" in done.stdout

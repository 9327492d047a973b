"""Where the tests find the checkout's own files: the repository root and the shipped bundles."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The checkout (the folder holding ``pyproject.toml``)."""

EVENTS_BUNDLE = ROOT / "export" / "events"
"""A real shipped bundle (0.5 s windows every 0.25 s at 16 kHz), fed generated voices."""

ARTIFACTS = ROOT / "test-artifacts"
"""Screenshots and traces the browser tests leave for a person to look at."""

SPEAKER_BUNDLE = ROOT / "export" / "speaker"
"""The shipped speaker bundle (the dashboard's browser tests enroll voices with it)."""

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
"""This environment with the checkout on ``PYTHONPATH``: a child process imports this code."""

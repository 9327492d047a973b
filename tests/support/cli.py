"""The edgesiam command in tests: as a user runs it (a fresh ``python -m edgesiam`` process), or one
sub-command in this process through its own parser (no CLI start-up per call)."""

from __future__ import annotations

import argparse
import subprocess
import sys


def run_edgesiam(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``edgesiam ARGS…`` in this interpreter's environment; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "edgesiam", *args], capture_output=True, text=True, timeout=timeout
    )


def export_parser() -> argparse.ArgumentParser:
    """A parser holding only ``edgesiam export`` (the training libraries it needs load lazily)."""
    from edgesiam.export.cli import add_export_parser

    parser = argparse.ArgumentParser(prog="edgesiam")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def run_export(*args: str) -> int:
    """``edgesiam export ARGS --quiet`` through the sub-command's own parser and ``cmd_export``."""
    parsed = export_parser().parse_args(["export", *args, "--quiet"])
    code: int = parsed.func(parsed)
    return code

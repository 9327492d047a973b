"""The edgesiam command in tests: as a user runs it (a fresh ``python -m edgesiam`` process), or one
sub-command in this process through its own parser (no CLI start-up per call)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

import pytest

from edgesiam.errors import EdgesiamError


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


def cohort_always_shipped(*args: Any, **kwargs: Any) -> Any:
    """``evaluate_cohort`` as if the cohort always helped: patched into the bundle writer, an
    export ships its cohort and normalised thresholds whatever the tiny model's EER says."""
    from edgesiam.export import cohort

    result = cohort.evaluate_cohort(*args, **kwargs)
    info = result.info.model_copy(update={"used": True, "file": cohort.COHORT_FILE})
    return cohort.CohortResult(info, result.embeddings)


def gallery_parser() -> argparse.ArgumentParser:
    """A parser holding only ``edgesiam enroll`` and ``edgesiam gallery``."""
    from edgesiam.runtime.gallery_cli import add_gallery_parsers

    parser = argparse.ArgumentParser(prog="edgesiam")
    add_gallery_parsers(parser.add_subparsers(dest="command", required=True))
    return parser


def run_gallery(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``edgesiam enroll|gallery ARGS`` through their own parser, handling errors as
    ``edgesiam.cli.main`` does: ``(exit code, stdout, stderr)``."""
    parsed = gallery_parser().parse_args([str(a) for a in args])
    try:
        code: int = parsed.func(parsed)
    except EdgesiamError as exc:
        print(f"edgesiam: error: {exc}", file=sys.stderr)
        code = 2
    out, err = capsys.readouterr()
    return code, out, err


def run_args(*argv: str) -> argparse.Namespace:
    """``edgesiam run ARGV`` parsed by the sub-command's own parser (not run)."""
    from edgesiam.runtime.run_cli import add_run_parser

    parser = argparse.ArgumentParser(prog="edgesiam")
    add_run_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["run", *argv])

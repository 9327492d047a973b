"""The one way a command of ``edgesiam`` adds its sub-parser: every verb's ``--help`` keeps its
description's line breaks (the examples in it stay readable). Also the options several verbs
share, and the hand-over of parsed options to the function a verb runs."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_command", "add_log_level", "add_quiet", "pass_through"]

LOG_LEVELS = ("debug", "info", "warning", "error")


def add_command(subparsers: Any, name: str, *, help: str, description: str | None) -> Any:
    """Add the verb ``name`` to ``subparsers`` (an ``add_subparsers`` result); returns its parser."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_log_level(parser: Any, help: str = "log detail on stderr (default: info)") -> None:
    """``--log-level``, the same choices and default for every long-running verb."""
    parser.add_argument("--log-level", default="info", choices=list(LOG_LEVELS), help=help)


def add_quiet(parser: Any, help: str | None = "no progress bars") -> None:
    """``-q``/``--quiet``: a verb that shows its progress says nothing of it."""
    parser.add_argument("-q", "--quiet", action="store_true", help=help)


def pass_through(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options ``names`` as keyword arguments, for a function whose parameters carry the
    options' names (``--skip-mqtt`` → ``skip_mqtt=``): the options handed on unchanged."""
    return {name: getattr(args, name) for name in names}

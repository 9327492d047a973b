"""The one way a command of ``edgesiam`` adds its sub-parser: every verb's ``--help`` keeps its
description's line breaks (the examples in it stay readable)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_command"]


def add_command(subparsers: Any, name: str, *, help: str, description: str | None) -> Any:
    """Add the verb ``name`` to ``subparsers`` (an ``add_subparsers`` result); returns its parser."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

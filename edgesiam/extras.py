"""Optional dependencies, imported where they are first needed: a device installs only the extras
it uses (``pip install 'edgesiam[mic]'``), and a missing one is said in words that name the extra."""

from __future__ import annotations

import importlib
from typing import Any

from edgesiam.errors import MissingExtraError

__all__ = ["import_extra"]


def import_extra(module: str, extra: str, package: str | None = None) -> Any:
    """The module ``module``; when it cannot be imported, a :class:`MissingExtraError` naming the
    distribution ``package`` (default: the module's name) and the ``extra`` that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(package or module, extra) from exc

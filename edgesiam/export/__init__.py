"""Export (workstation only): torch checkpoint → gated int8 TFLite bundle.

TensorFlow and torch are imported inside the functions that need them, so importing this package
(or ``edgesiam.export.cli`` for the ``edgesiam export`` parser) costs nothing; a missing one raises
``MissingExtraError`` naming the extra to install. The names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExportOptions": "edgesiam.export.bundle_writer",
    "ExportResult": "edgesiam.export.bundle_writer",
    "export_bundle": "edgesiam.export.bundle_writer",
    "GateLimits": "edgesiam.export.gate",
    "GateReport": "edgesiam.export.gate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgesiam.export' has no attribute {name!r}")

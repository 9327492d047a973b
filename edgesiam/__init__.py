"""edgesiam: few-shot similarity matching for audio and sensor streams on edge devices."""

from __future__ import annotations

from edgesiam.errors import (
    ConfigError,
    DataError,
    EdgesiamError,
    MissingExtraError,
    ModelError,
    RecipeError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "EdgesiamError",
    "MissingExtraError",
    "ModelError",
    "RecipeError",
    "__version__",
]

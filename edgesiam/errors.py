"""The one exception hierarchy of edgesiam.

Every error that a user can cause (a bad file, a bad config, a missing extra) is an ``EdgesiamError``
with a message that names the thing at fault and, where there is one, the fix. The CLI prints these
without a traceback; anything else is a bug.
"""

from __future__ import annotations


class EdgesiamError(Exception):
    """Base class of every error edgesiam raises on purpose."""


class ConfigError(EdgesiamError):
    """A config file or CLI option failed validation."""


class DataError(EdgesiamError):
    """A dataset folder, recording or sample stream cannot be used."""

    def __init__(self, message: str, path: object | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path is not None else message)


class RecipeError(EdgesiamError):
    """A data recipe could not fetch or convert its source."""


class ModelError(EdgesiamError):
    """A checkpoint or model cannot be loaded or does not fit the data."""


class MissingExtraError(EdgesiamError, ImportError):
    """An optional dependency is not installed; the message says which extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"this needs the Python package '{module}', which is not installed; "
            f"install it with: pip install 'edgesiam[{extra}]'"
        )


class BundleError(EdgesiamError):
    """A model bundle is missing, malformed, modified after export, or cannot run here."""


class OutboxError(EdgesiamError):
    """The durable event outbox cannot store an event (full by policy, disk full, unreadable)."""

"""The one exception hierarchy of edgesiam.

Every error that a user can cause (a bad file, a bad config, a missing extra) is an ``EdgesiamError``
with a message that names the thing at fault and, where there is one, the fix. The CLI prints these
without a traceback; anything else is a bug.

::

    Exception
    ├── EdgesiamError
    │   ├── ConfigError             a config file or CLI option failed validation
    │   ├── DataError               a dataset folder, recording or sample stream cannot be used
    │   ├── RecipeError             a data recipe could not fetch or convert its source
    │   ├── ModelError              a checkpoint or model cannot be loaded or does not fit the data
    │   ├── MissingExtraError       (also ImportError) an optional dependency is not installed
    │   │   └── NoInterpreterError  no TFLite interpreter package can be imported
    │   ├── BundleError             a bundle is missing, malformed, modified or cannot run here
    │   │   └── GateError           an exported model failed the gate (no bundle written)
    │   ├── OutboxError             the device's event outbox cannot store an event
    │   ├── HistoryError            the dashboard's history database cannot be opened or written
    │   ├── InvalidPayload          (also ValueError) an MQTT message lacks its schema's fields
    │   └── CommandFailed           a dashboard command was not sent or not answered in time
    ├── BadRequest                  an HTTP request to the dashboard is refused (status, code)
    ├── CommandRejected             a device command's request is invalid (answered, not raised)
    └── CommandTooLarge             a device command's payload is over its size limit (answered)

The last three never leave their module's handler: they become an HTTP error response or a command
result with an ``error_code``.
"""

from __future__ import annotations

from typing import Protocol


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


class NoInterpreterError(MissingExtraError):
    """No TFLite interpreter package can be imported; the message says why for each."""

    def __init__(self, reasons: dict[str, str]) -> None:
        super().__init__("ai-edge-litert", "device")
        tried = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        message = f"{self.args[0]} (or tflite-runtime on a 32-bit ARM board). Tried: {tried}"
        self.args = (message,)
        self.msg = message  # what ImportError's str() shows


class BundleError(EdgesiamError):
    """A model bundle is missing, malformed, modified after export, or cannot run here."""


class _Report(Protocol):
    def render(self) -> str: ...


class GateError(BundleError):
    """The exported model failed the gate; the message is the whole report
    (:class:`edgesiam.export.gate.GateReport`)."""

    def __init__(self, report: _Report) -> None:
        self.report = report
        super().__init__(
            "the exported model failed the gate (no bundle written; --force writes it anyway):\n"
            + report.render()
        )


class OutboxError(EdgesiamError):
    """The durable event outbox cannot store an event (full by policy, disk full, unreadable)."""


class HistoryError(EdgesiamError):
    """The history database cannot be opened or written."""


class InvalidPayload(EdgesiamError, ValueError):
    """A message does not have the fields its schema requires (it is not stored)."""


class CommandFailed(EdgesiamError):
    """A command could not be sent, or its result did not come back in time."""

    def __init__(self, message: str, code: str) -> None:
        self.code = code
        super().__init__(message)


class BadRequest(Exception):
    """An HTTP request the dashboard refuses: its status and ``error_code`` go in the response."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid") -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class CommandRejected(Exception):
    """A device command's request cannot be honoured as sent (answered with ``invalid``)."""


class CommandTooLarge(Exception):
    """A device command's payload is over its size limit (answered with ``too_large``)."""

"""The MQTT wire contract (docs/MQTT.md): topics, status strings, payload schemas and their builders.

The one definition of what a device sends and receives, for every party on the wire: the device's
publisher, the dashboard's ingester, the fleet simulation and tests. Nothing here opens a connection.

- ``<prefix>/<device>/status``: retained :data:`STATUS_ONLINE` / :data:`STATUS_OFFLINE`.
- ``…/event``: :data:`SCHEMA_EVENT` (:func:`event_builder`); ``…/near_miss``:
  :data:`SCHEMA_NEAR_MISS`; ``…/metrics``: :data:`SCHEMA_METRICS`.
- ``…/cmd/<verb>`` (one of :data:`VERBS`) → ``…/cmd/<verb>/result`` (:data:`SCHEMA_COMMAND_RESULT`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

__all__ = [
    "DEVICE_ID",
    "SCHEMA_COMMAND_RESULT",
    "SCHEMA_EVENT",
    "SCHEMA_METRICS",
    "SCHEMA_NEAR_MISS",
    "SCHEMA_REVISION",
    "STATUS_OFFLINE",
    "STATUS_ONLINE",
    "TOPIC_PREFIX",
    "VERBS",
    "CommandCallback",
    "OutboxCounts",
    "Topics",
    "error_result",
    "event_builder",
    "metrics_payload",
    "near_miss_payload",
    "ok_result",
    "peek_correlation_id",
    "run_command_handler",
    "to_json",
]

log = logging.getLogger(__name__)

SCHEMA_EVENT: Final = "edgesiam.event.v1"
SCHEMA_NEAR_MISS: Final = "edgesiam.near_miss.v1"
SCHEMA_METRICS: Final = "edgesiam.metrics.v1"
SCHEMA_REVISION: Final = 2
"""Fields added within v1 (consumers ignore what they do not know): revision 2 adds the window's
``embedding`` / ``embedding_scale`` / ``embedding_id`` to events and near misses."""

STATUS_ONLINE: Final = "online"
STATUS_OFFLINE: Final = "offline"

SCHEMA_COMMAND_RESULT: Final = "edgesiam.cmd_result.v1"
VERBS: Final = (
    "enroll",
    "forget",
    "list",
    "threshold",
    "reload",
    "reject",
    "unreject",
    "confirm",
    "forget_template",
    "replay",
)
"""Every command a device answers (``…/cmd/<verb>``)."""

DEVICE_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""A device's topic level."""
TOPIC_PREFIX: Final = re.compile(r"^[^#+/\s]+(/[^#+/\s]+)*$")
"""Topic levels of a prefix: no wildcards, no empty levels."""

_MAX_MESSAGE: Final = 500

CommandCallback = Callable[[str, bytes], dict[str, Any]]
"""``(verb, payload) -> result``: what :class:`~edgesiam.runtime.commands.CommandHandler.handle`
is; it must never raise (the publisher turns an exception into an error result anyway)."""


class _Leaf:
    """A topic one level under the device's, named as the attribute: ``Topics.event`` is
    ``<prefix>/<device>/event``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, topics: Topics, owner: type | None = None) -> str:
        return f"{topics.base}/{self.name}"


@dataclass(frozen=True)
class Topics:
    """Every topic of one device (docs/MQTT.md)."""

    prefix: str
    device: str

    status = _Leaf()
    event = _Leaf()
    near_miss = _Leaf()
    metrics = _Leaf()

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def commands(self) -> str:
        """The subscription filter for commands (``+`` does not match ``<verb>/result``)."""
        return f"{self.base}/cmd/+"

    def command(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}"

    def command_result(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}/result"

    def verb_of(self, topic: str) -> str | None:
        """``…/cmd/<verb>`` → ``verb``; anything else → None."""
        head = f"{self.base}/cmd/"
        if topic.startswith(head) and "/" not in topic[len(head) :] and len(topic) > len(head):
            return topic[len(head) :]
        return None


class OutboxCounts(Protocol):
    """What metrics report of the device's outbox."""

    @property
    def depth(self) -> int: ...

    @property
    def dropped(self) -> int: ...


def to_json(payload: dict[str, Any]) -> str:
    """Compact JSON, numpy values as plain numbers (what the runtime computes with)."""
    return json.dumps(payload, separators=(",", ":"), default=_plain)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def event_builder(
    *,
    device: str,
    model: str,
    label: str,
    score: float,
    threshold: float,
    offset_s: float,
    ts: float | None = None,
    **extra: Any,
) -> Callable[[int, str], dict[str, Any]]:
    """The ``build(seq, id)`` that :meth:`Outbox.add` calls for one match event (schema v1).

    ``event_type`` repeats ``label`` for Home Assistant's event entity; ``extra`` keys (e.g.
    ``source``, ``model_sha256``) are added as they are.
    """
    when = time.time() if ts is None else ts

    def build(seq: int, event_id: str) -> dict[str, Any]:
        return {
            "schema": SCHEMA_EVENT,
            "schema_revision": SCHEMA_REVISION,
            "id": event_id,
            "seq": seq,
            "device": device,
            "ts": round(float(when), 3),
            "label": label,
            "event_type": label,
            "score": round(float(score), 5),
            "threshold": round(float(threshold), 5),
            "offset_s": round(float(offset_s), 3),
            "model": model,
            **extra,
        }

    return build


def near_miss_payload(device: str, data: dict[str, Any]) -> dict[str, Any]:
    """A near miss (schema v1): the runtime's dict with ``schema``, ``device`` and ``ts`` added."""
    return {
        "schema": SCHEMA_NEAR_MISS,
        "schema_revision": SCHEMA_REVISION,
        "device": device,
        "ts": round(time.time(), 3),
        **data,
    }


def metrics_payload(
    device: str, data: dict[str, Any], outbox: OutboxCounts | None
) -> dict[str, Any]:
    """Metrics (schema v1): the runtime's dict plus ``outbox_depth`` / ``outbox_dropped``."""
    out = {"schema": SCHEMA_METRICS, "device": device, "ts": round(time.time(), 3), **data}
    if outbox is not None:
        out.setdefault("outbox_depth", outbox.depth)
        out.setdefault("outbox_dropped", outbox.dropped)
    return out


def error_result(verb: str, code: str, message: str, correlation_id: str | None) -> dict[str, Any]:
    """A failed command's result (``code``: bad_json, invalid, unknown_verb, too_large, failed,
    busy, unavailable, internal)."""
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return {
        "schema": SCHEMA_COMMAND_RESULT,
        "verb": verb[:64],
        "ok": False,
        "correlation_id": correlation_id,
        "error": message,
        "error_code": code,
        "ts": round(time.time(), 3),
    }


def ok_result(verb: str, result: dict[str, Any], correlation_id: str | None) -> dict[str, Any]:
    """A successful command's result, ``result`` as the device returned it."""
    return {
        "schema": SCHEMA_COMMAND_RESULT,
        "verb": verb,
        "ok": True,
        "correlation_id": correlation_id,
        "result": result,
        "ts": round(time.time(), 3),
    }


def peek_correlation_id(payload: bytes | bytearray | Any) -> str | None:
    """The request's ``correlation_id`` if it can be read at all (for error results)."""
    try:
        data = json.loads(bytes(payload)) if payload else None
    except (ValueError, TypeError, RecursionError):
        return None
    if isinstance(data, dict):
        cid = data.get("correlation_id")
        if isinstance(cid, str) and len(cid) <= 128:
            return cid
    return None


def run_command_handler(
    handler: CommandCallback | None, verb: str, payload: bytes
) -> dict[str, Any]:
    """The handler's result for one command, or an error result: never an exception, never a
    result that cannot be sent as JSON."""
    if handler is None:
        return error_result(verb, "unavailable", "this device takes no commands", None)
    try:
        result = handler(verb, payload)
        to_json(result)
        return result
    except Exception as exc:  # the handler promises not to raise; never let one through anyway
        log.exception("command %s: the handler failed", verb)
        return error_result(verb, "internal", str(exc), peek_correlation_id(payload))

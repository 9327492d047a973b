"""Where the runtime's events, near misses and metrics go: the :class:`Publisher` interface and the
publishers that need no broker.

The interface lives beside its one consumer, the runtime; :class:`~edgesiam.mqtt.publisher.
MqttPublisher` is its implementation on the wire. The others here are for runs without a broker:
:class:`NullPublisher` (benchmarks), :class:`StdoutPublisher` (``--no-mqtt``: JSON lines) and
:class:`MemoryPublisher` (tests and the demo: records what would be sent, and takes commands as if
they came from the broker).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO, runtime_checkable

from edgesiam.mqtt.contract import (
    STATUS_OFFLINE,
    STATUS_ONLINE,
    CommandCallback,
    Topics,
    metrics_payload,
    near_miss_payload,
    run_command_handler,
    to_json,
)
from edgesiam.runtime.outbox import Event, Outbox

__all__ = [
    "MemoryPublisher",
    "NullPublisher",
    "PublishedMessage",
    "Publisher",
    "StdoutPublisher",
    "near_miss_line",
]


@runtime_checkable
class Publisher(Protocol):
    """Where the runtime's events, near misses and metrics go, and where commands come from."""

    def start(self) -> None: ...

    def stop(self, drain_timeout_s: float = 2.0) -> None: ...

    def publish_event(self, event: Event) -> None:
        """``event`` is already stored in the outbox; deliver it (now or when connected)."""
        ...

    def publish_near_miss(self, data: dict[str, Any]) -> None: ...

    def publish_metrics(self, data: dict[str, Any]) -> None: ...

    def set_command_handler(self, handler: CommandCallback | None) -> None: ...

    def set_labels(self, labels: Sequence[str]) -> None:
        """The gallery's labels changed (Home Assistant's event types follow them)."""
        ...


@dataclass
class PublishedMessage:
    topic: str
    payload: str
    qos: int
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class MemoryPublisher:
    """Records what would be published and acknowledges events at once (tests, ``--no-mqtt``).

    ``on_message(message)``, when given, sees each message as it is recorded (e.g. to print events).
    """

    device_id: str = "device"
    outbox: Outbox | None = None
    prefix: str = "edgesiam"
    on_message: Callable[[PublishedMessage], None] | None = None
    messages: list[PublishedMessage] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    _handler: CommandCallback | None = None

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix, self.device_id)

    def _record(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> None:
        message = PublishedMessage(topic, payload, qos, retain)
        self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)

    def on_topic(self, topic: str) -> list[Any]:
        """The payloads recorded on ``topic`` (JSON decoded where they are JSON)."""
        out = []
        for m in self.messages:
            if m.topic == topic:
                try:
                    out.append(m.json())
                except json.JSONDecodeError:
                    out.append(m.payload)
        return out

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.on_topic(self.topics.event)

    def start(self) -> None:
        self._record(self.topics.status, STATUS_ONLINE, 1, True)
        if self.outbox is not None:  # what a previous run left, as the real publisher replays it
            while batch := self.outbox.pending(1000):
                for event in batch:
                    self.publish_event(event)

    def stop(self, drain_timeout_s: float = 2.0) -> None:
        self._record(self.topics.status, STATUS_OFFLINE, 1, True)

    def publish_event(self, event: Event) -> None:
        self._record(self.topics.event, event.text, 1)
        if self.outbox is not None:
            self.outbox.ack(event.seq)

    def republish(self, event: Event) -> bool:
        """Publish a kept event again (``cmd/replay``)."""
        self._record(self.topics.event, event.text, 1)
        return True

    def publish_near_miss(self, data: dict[str, Any]) -> None:
        self._record(self.topics.near_miss, to_json(near_miss_payload(self.device_id, data)))

    def publish_metrics(self, data: dict[str, Any]) -> None:
        payload = metrics_payload(self.device_id, data, self.outbox)
        self._record(self.topics.metrics, to_json(payload))

    def set_command_handler(self, handler: CommandCallback | None) -> None:
        self._handler = handler

    def set_labels(self, labels: Sequence[str]) -> None:
        self.labels = sorted(labels)

    def command(self, verb: str, payload: bytes | str | dict[str, Any]) -> dict[str, Any]:
        """Deliver a command as if it came from the broker; returns (and records) the result."""
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        if isinstance(payload, str):
            payload = payload.encode()
        result = run_command_handler(self._handler, verb, payload)
        self._record(self.topics.command_result(verb), to_json(result), 1)
        return result


class NullPublisher:
    """Publishes nothing and acknowledges events at once (benchmarks)."""

    def __init__(self, outbox: Outbox | None = None) -> None:
        self.outbox = outbox

    def start(self) -> None:
        pass

    def stop(self, drain_timeout_s: float = 2.0) -> None:
        pass

    def publish_event(self, event: Event) -> None:
        if self.outbox is not None:
            self.outbox.ack(event.seq)

    def publish_near_miss(self, data: dict[str, Any]) -> None:
        pass

    def publish_metrics(self, data: dict[str, Any]) -> None:
        pass

    def set_command_handler(self, handler: CommandCallback | None) -> None:
        pass

    def set_labels(self, labels: Sequence[str]) -> None:
        pass


class StdoutPublisher(NullPublisher):
    """``--no-mqtt``: each event as one JSON line on standard output, each near miss as one line
    on standard error (score and gap, to tune thresholds offline), and nothing kept in memory (a
    device may run like this for days)."""

    def __init__(
        self, outbox: Outbox | None = None, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        super().__init__(outbox)
        self.out = out
        self.err = err

    def publish_event(self, event: Event) -> None:
        stream = self.out if self.out is not None else sys.stdout
        print(event.text, file=stream, flush=True)
        super().publish_event(event)

    def publish_near_miss(self, data: dict[str, Any]) -> None:
        stream = self.err if self.err is not None else sys.stderr
        print(near_miss_line(data), file=stream, flush=True)


def near_miss_line(data: dict[str, Any]) -> str:
    """``near miss: bell 0.9712 < 0.9793 (short by 0.0081) at 12.35 s`` (4 decimals: a gap
    under a thousandth must not read as 0.000)."""
    score, threshold = float(data["score"]), float(data["threshold"])
    return (
        f"near miss: {data['label']} {score:.4f} < {threshold:.4f} "
        f"(short by {threshold - score:.4f}) at {float(data['offset_s']):.2f} s"
    )

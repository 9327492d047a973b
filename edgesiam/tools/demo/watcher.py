"""The demo's MQTT side: a free localhost port for the embedded broker, and a subscriber that
prints each event as it arrives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from typing import Any

from edgesiam.errors import EdgesiamError

__all__ = ["EventWatcher", "free_port"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# MQTT: the broker and the subscriber


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EventWatcher:
    """A paho subscriber on the device's event and status topics that prints events on arrival."""

    def __init__(self, host: str, port: int, tls: bool, topics: Any, on_event: Any) -> None:
        from edgesiam.mqtt.client import make_client

        self.topics = topics
        self.on_event = on_event
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.received: list[float] = []
        self.ids: set[str] = set()
        self.duplicates = 0
        self.statuses: list[str] = []
        self.ready = threading.Event()
        self.client = make_client(
            f"edgesiam-demo-watcher-{uuid.uuid4().hex[:8]}", protocol="3.1.1", tls=tls
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.host, self.port = host, port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe([(self.topics.event, 1), (self.topics.status, 1)])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        now = time.time()
        if message.topic == self.topics.status:
            with self.lock:
                self.statuses.append(message.payload.decode(errors="replace"))
            return
        try:
            event = json.loads(message.payload)
        except ValueError:
            return
        with self.lock:
            if event.get("id") in self.ids:  # at least once: a resent event
                self.duplicates += 1
                return
            self.ids.add(event.get("id"))
            self.events.append(event)
            self.received.append(now)
        try:
            self.on_event(event, now)
        except Exception:  # printing must never break the subscriber
            log.exception("printing an event failed")

    def start(self, timeout_s: float = 10.0) -> None:
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise EdgesiamError(
                f"cannot reach the MQTT broker at {self.host}:{self.port}: {exc}"
            ) from None
        self.client.loop_start()
        if not self.ready.wait(timeout_s):
            self.stop()
            raise EdgesiamError(
                f"the MQTT broker at {self.host}:{self.port} did not accept the subscription "
                f"within {timeout_s:.0f} s"
            )

    def last_status(self) -> str | None:
        with self.lock:
            return self.statuses[-1] if self.statuses else None

    def count(self) -> int:
        with self.lock:
            return len(self.events)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

"""Sensor rows from an MQTT topic (JSON or packed float32), at a nominal rate."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Literal

from edgesiam.errors import DataError
from edgesiam.mqtt.client import MqttSettings, make_client, paho, parse_broker_url
from edgesiam.runtime.sources.base import (
    Float32Array,
    StreamFormat,
    _StoppableSource,
    log,
)
from edgesiam.runtime.sources.rows import parse_sensor_payload

__all__ = ["MqttSensorSource"]


class MqttSensorSource(_StoppableSource):
    """Sensor rows from an MQTT topic (JSON or packed float32), at a nominal rate.

    ``broker`` is the runtime's broker (address, credentials, TLS); ``url`` names another broker
    instead, reached without credentials. The subscription is renewed on every reconnect;
    :attr:`subscribed` is set once the broker has confirmed it (tests wait on it).
    """

    def __init__(
        self,
        fmt: StreamFormat,
        topic: str,
        encoding: Literal["json", "f32le"] = "json",
        *,
        channels: int | None = None,
        sample_rate: float | None = None,
        broker: MqttSettings | None = None,
        url: str | None = None,
        qos: int = 0,
        client_id: str | None = None,
        units: object = None,
    ) -> None:
        super().__init__()
        self.topic = topic
        self.encoding = encoding
        self._sensor_shape(fmt, channels, sample_rate, f"mqtt:{topic}")
        paho()  # a missing extra is said when the source is made, not on the network thread
        self.broker = broker if url is None else None
        self.address = (
            parse_broker_url(url)
            if url is not None
            else broker.address
            if broker is not None
            else parse_broker_url("mqtt://localhost:1883")
        )
        scheme = "mqtts" if self.address.tls else "mqtt"
        self.description = f"{scheme}://{self.address.host}:{self.address.port}/{topic}"
        self.qos = qos
        self.client_id = client_id
        self._convert_units(fmt, units, self.sample_rate)
        self._queue: queue.Queue[Float32Array] = queue.Queue(maxsize=1024)
        self.subscribed = threading.Event()
        self.overflows = 0

    def _client(self) -> Any:
        client = make_client(
            self.client_id or "", protocol="3.1.1", settings=self.broker, tls=self.address.tls
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("%s: the broker refused the connection: %s", self.description, reason)
            return
        client.subscribe(self.topic, qos=self.qos)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons):
            log.warning("%s: the broker refused the subscription: %s", self.description, reasons)
            return
        self.subscribed.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.subscribed.clear()
        if not self.closed:
            log.warning("%s: disconnected (%s); reconnecting", self.description, reason)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            rows = parse_sensor_payload(bytes(message.payload), self.encoding, self.channels)
        except DataError as exc:
            self._reject(f"a message on {message.topic}", str(exc))
            return
        except Exception:  # a parser bug must not end paho's network loop, and the stream with it
            log.exception("%s: could not parse a message on %s", self.description, message.topic)
            self._reject(f"a message on {message.topic}", "unreadable")
            return
        try:
            self._queue.put_nowait(rows)
        except queue.Full:
            self.overflows += 1

    def chunks(self) -> Iterator[Float32Array]:
        client = self._client()
        keepalive = self.broker.keepalive if self.broker is not None else 30
        client.connect_async(self.address.host, self.address.port, keepalive=keepalive)
        client.loop_start()
        try:
            while not self.closed:
                try:
                    rows = self._queue.get(timeout=self.poll_s)
                except queue.Empty:
                    continue
                yield self._in_bundle_units(rows)
        finally:
            client.disconnect()
            client.loop_stop()

"""A raw MQTT 5 client over TLS for the security tests: it reports how the broker answered the
connection, each publish (the PUBACK's reason code) and each subscription (the SUBACK's)."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.mqtt import Received, wait_until


@dataclass
class TlsClient:
    """One connection; ``connect()`` returns the CONNACK reason (or raises for a failed TLS
    handshake)."""

    port: int
    username: str | None = None
    password: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    tls: bool = True
    acks: list[Any] = field(default_factory=list)
    subacks: list[Any] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        if self.tls:
            self.client.tls_set(
                ca_certs=str(self.ca) if self.ca else None,
                certfile=str(self.cert) if self.cert else None,
                keyfile=str(self.key) if self.key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self._connack: list[Any] = []
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda c, u, mid, rc, p: self.acks.append(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.append(rcs)
        self.client.on_message = lambda c, u, m: self.messages.append(
            Received(m.topic, bytes(m.payload), bool(m.retain), m.qos, 0.0)
        )

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._connack.append(rc)
        self._connected.set()

    def connect(self, timeout: float = 10.0) -> Any:
        """The CONNACK's reason code; ``ssl.SSLError`` when the TLS handshake fails."""
        self.client.connect("localhost" if self.tls else "127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            raise TimeoutError(f"no CONNACK from port {self.port} in {timeout} s")
        return self._connack[0]

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> str:
        """Publish with QoS 1; the PUBACK's reason code as text (``Success``, ``Not authorized``)."""
        n = len(self.acks)
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
        assert wait_until(lambda: len(self.acks) > n, 10), f"no PUBACK for {topic}"
        return str(self.acks[-1].getName())

    def subscribe(self, topic: str) -> str:
        """Subscribe with QoS 1; the SUBACK's reason code as text (``Granted QoS 1`` …)."""
        n = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        assert wait_until(lambda: len(self.subacks) > n, 10), f"no SUBACK for {topic}"
        return str(self.subacks[-1][0].getName())

    def on(self, topic: str) -> list[Received]:
        return [m for m in list(self.messages) if m.topic == topic]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

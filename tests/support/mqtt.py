"""A real Mosquitto for the runtime's MQTT tests, and a subscriber that records what arrives.

``mosquitto`` is function-scoped (it starts in ~30 ms): a broker on a free localhost port with a
temporary config and persistence on, so ``stop()`` / ``start()`` on the same port keeps retained
messages and the QoS 1 queues of persistent sessions, as a broker restart in the field does.
``make_mosquitto(extra_lines)`` builds one with more config (passwords, ACLs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.pki import issue_certificates

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class MosquittoBroker:
    """One mosquitto process on a fixed port; stop and start it again at will."""

    def __init__(self, folder: Path, extra: list[str] | None = None) -> None:
        if MOSQUITTO is None:
            pytest.skip("mosquitto is not installed (run: make apt)")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.log = folder / "mosquitto.log"
        self.config = folder / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {folder}/",
            "autosave_interval 1",
            "autosave_on_changes true",  # saved after every change: a SIGKILL loses nothing acked
            "max_queued_messages 100000",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # as root, mosquitto would switch to 'mosquitto' otherwise
        extra = list(extra or [])
        if not any(line.startswith(("allow_anonymous", "password_file")) for line in extra):
            lines.append("allow_anonymous true")
        self.config.write_text("\n".join(lines + extra) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def listening() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        if not wait_until(listening, timeout=10):
            raise RuntimeError(f"mosquitto did not listen on {self.port}\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean stop (persistence saved); SIGKILL: a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def make_mosquitto(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    brokers: list[MosquittoBroker] = []

    def make(extra: list[str] | None = None, name: str = "mosquitto") -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / name, extra)
        broker.start()
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(make_mosquitto: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    return make_mosquitto()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float
    properties: Any = None

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A paho client that records every message on its subscriptions (thread-safe)."""

    host: str
    port: int
    topics: list[str]
    client_id: str = ""
    persistent: bool = False
    protocol: int = mqtt.MQTTv5
    username: str | None = None
    password: str | None = None
    messages: list[Received] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {"client_id": self.client_id, "protocol": self.protocol}
        if self.protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = not self.persistent
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe([(t, 1) for t in self.topics])
            self.connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(
                Received(
                    message.topic,
                    bytes(message.payload),
                    bool(message.retain),
                    message.qos,
                    time.time(),
                    getattr(message, "properties", None),
                )
            )

    def start(self) -> Subscriber:
        kwargs: dict[str, Any] = {}
        if self.protocol == mqtt.MQTTv5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if self.persistent:
                props.SessionExpiryInterval = 3600
            kwargs = {"clean_start": not self.persistent, "properties": props}
        self.client.connect_async(self.host, self.port, keepalive=10, **kwargs)
        self.client.loop_start()
        assert self.connected.wait(10), "subscriber could not connect"
        time.sleep(0.1)  # SUBACK
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, n: int = 1, timeout: float = 10.0) -> list[Received]:
        wait_until(lambda: len(self.on(topic)) >= n, timeout)
        return self.on(topic)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, **kw: Any) -> None:
        self.client.publish(topic, payload, qos=qos, **kw).wait_for_publish(5)


@pytest.fixture
def subscriber(
    mosquitto: MosquittoBroker,
) -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(*topics: str, **kw: Any) -> Subscriber:
        sub = Subscriber(mosquitto.host, mosquitto.port, list(topics), **kw).start()
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.stop()


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    if subprocess.run(["which", "openssl"], capture_output=True).returncode:
        pytest.skip("openssl is not installed")
    d = tmp_path / "pki"
    d.mkdir()
    issue_certificates(d, {"ca": "test-ca"}, {"server": "localhost", "client": "dev1"})
    return d


def password_file(folder: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file made with mosquitto_passwd (hashed, as in production)."""
    path = folder / "passwd"
    path.write_text("")
    for user, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(path), user, password], check=True)
    return path

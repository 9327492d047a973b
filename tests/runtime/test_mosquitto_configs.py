"""The sample Mosquitto config and ACL in firmware_configs/mosquitto/, run as they are.

Only file locations and ports are rewritten; the rules are the shipped ones: anonymous clients are
refused, a device writes only its own topics, the dashboard reads all and writes only commands.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgesiam.mqtt.client import MqttSettings
from edgesiam.mqtt.contract import event_builder
from edgesiam.mqtt.publisher import MqttPublisher
from edgesiam.runtime.commands import CommandHandler
from edgesiam.runtime.outbox import Outbox
from tests.support.mqtt import MosquittoBroker, Subscriber, free_port, password_file, wait_until
from tests.support.runtime import FakeRuntime

SAMPLES = Path(__file__).parents[2] / "firmware_configs" / "mosquitto"
USERS = {"dev1": "pw-dev1", "dev2": "pw-dev2", "dashboard": "pw-dash", "homeassistant": "pw-ha"}


@pytest.fixture
def broker(tmp_path: Path, certificates: Path) -> Iterator[tuple[MosquittoBroker, int]]:
    """The sample config on a free plaintext (loopback) port and a free TLS port."""
    passwd = password_file(tmp_path, USERS)
    b = MosquittoBroker(tmp_path / "sample")
    tls_port = free_port()
    text = (SAMPLES / "mosquitto.conf").read_text()
    for old, new in [
        ("/etc/mosquitto/passwd", str(passwd)),
        ("/etc/mosquitto/acl", str(SAMPLES / "acl")),
        ("/etc/mosquitto/certs/", f"{certificates}/"),
        ("/var/lib/mosquitto/", f"{tmp_path}/"),
        ("/var/log/mosquitto/mosquitto.log", str(b.log)),
    ]:
        assert old in text
        text = text.replace(old, new)
    text = re.sub(r"^listener 1883 127\.0\.0\.1$", f"listener {b.port} 127.0.0.1", text, flags=re.M)
    text = re.sub(r"^listener 8883$", f"listener {tls_port} 127.0.0.1", text, flags=re.M)
    if os.geteuid() == 0:
        text += "\nuser root\n"
    b.config.write_text(text)
    b.start()
    yield b, tls_port
    b.stop()


def client(broker: MosquittoBroker, user: str | None) -> tuple[mqtt.Client, list[Any]]:
    """A raw MQTT 5 client that records the reason code of each PUBACK."""
    acks: list[Any] = []
    connected = threading.Event()
    result: list[Any] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if user is not None:
        c.username_pw_set(user, USERS[user])

    def on_connect(cl: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        result.append(rc)
        connected.set()

    c.on_connect = on_connect
    c.on_publish = lambda cl, u, mid, rc, p: acks.append(rc)
    c.connect(broker.host, broker.port)
    c.loop_start()
    assert connected.wait(5)
    if result[0].is_failure:
        c.loop_stop()
        raise PermissionError(str(result[0]))
    return c, acks


def publish_acked(c: mqtt.Client, acks: list[Any], topic: str) -> Any:
    n = len(acks)
    c.publish(topic, b"{}", qos=1).wait_for_publish(5)
    assert wait_until(lambda: len(acks) > n)
    return acks[-1]


def test_anonymous_clients_are_refused(broker: tuple[MosquittoBroker, int]) -> None:
    with pytest.raises(PermissionError, match=r"Not authorized|Bad user name"):
        client(broker[0], None)


def test_the_sample_setup_end_to_end(
    broker: tuple[MosquittoBroker, int], certificates: Path, tmp_path: Path
) -> None:
    b, tls_port = broker

    def make(*topics: str, **kw: Any) -> Subscriber:
        return Subscriber(b.host, b.port, list(topics), **kw).start()

    dashboard = make("edgesiam/#", username="dashboard", password=USERS["dashboard"])
    ha = make("homeassistant/#", username="homeassistant", password=USERS["homeassistant"])

    # dev1 over mutual TLS with a password: events, discovery and commands all pass the ACL
    os.environ["EDGESIAM_TEST_DEV1_PW"] = USERS["dev1"]
    settings = MqttSettings(
        url=f"mqtts://dev1@localhost:{tls_port}",
        device_id="dev1",
        password_env="EDGESIAM_TEST_DEV1_PW",
        tls_ca=certificates / "ca.crt",
        tls_cert=certificates / "client.crt",
        tls_key=certificates / "client.key",
    )
    outbox = Outbox(tmp_path / "dev1.db", id_prefix="dev1")
    device = MqttPublisher(settings, outbox, "tiny", labels=["alice"])
    device.set_command_handler(CommandHandler(FakeRuntime()))
    device.start()
    try:
        assert wait_until(lambda: device.connected), b.log_text()
        device.publish_event(
            outbox.add(
                event_builder(
                    device="dev1", model="m", label="alice", score=0.9, threshold=0.5, offset_s=0
                )
            )
        )
        assert len(dashboard.wait_for("edgesiam/dev1/event")) == 1
        assert wait_until(lambda: outbox.depth == 0)
        assert ha.wait_for("homeassistant/event/dev1/edgesiam_match/config")
        dashboard.publish("edgesiam/dev1/cmd/list", b'{"correlation_id": "d1"}')
        (answer,) = dashboard.wait_for("edgesiam/dev1/cmd/list/result")
        assert answer.json()["ok"] is True and answer.json()["correlation_id"] == "d1"

        # what the ACL forbids: the broker answers "Not authorized" and delivers nothing
        dev1, acks = client(b, "dev1")
        for topic in ("edgesiam/dev2/event", "edgesiam/dev1/cmd/enroll", "homeassistant/status"):
            assert publish_acked(dev1, acks, topic).getName() == "Not authorized", topic
        assert publish_acked(dev1, acks, "edgesiam/dev1/metrics").getName() == "Success"
        dev1.loop_stop()
        dash, dash_acks = client(b, "dashboard")
        assert publish_acked(dash, dash_acks, "edgesiam/dev1/event").getName() == "Not authorized"
        assert publish_acked(dash, dash_acks, "edgesiam/dev2/cmd/list").getName() == "Success"
        dash.loop_stop()
        assert wait_until(lambda: len(dashboard.on("edgesiam/dev2/cmd/list")) == 1)
        assert dashboard.on("edgesiam/dev2/event") == []
        assert len(dashboard.on("edgesiam/dev1/event")) == 1
        assert dashboard.on("edgesiam/dev1/cmd/enroll") == []
    finally:
        device.stop(drain_timeout_s=0)
        outbox.close()
        dashboard.stop()
        ha.stop()
        os.environ.pop("EDGESIAM_TEST_DEV1_PW", None)

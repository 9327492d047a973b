"""A real ``edgesiam run`` on the secured broker: mutual TLS (the shipped listener, the device's
own certificate), its password read from a file, the shipped ACL.

It proves that the device publishes its status, events and Home Assistant discovery and answers
commands from the dashboard; that its login cannot write another device's topics; and that no
password appears in the broker's log (every log type on), in the device's output at debug
verbosity, or on any process command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mqtt import Subscriber, wait_until
from tests.support.secure_broker import SecureBroker, command_lines, start_secure_device
from tests.support.signals import to_pcm, voice
from tests.support.tls_client import TlsClient

pytestmark = pytest.mark.timeout(180)


def statuses(client: TlsClient, device: str) -> list[bytes]:
    return [m.payload for m in client.on(f"edgesiam/{device}/status")]


@pytest.fixture
def dashboard(secure_broker: SecureBroker) -> Iterator[TlsClient]:
    b = secure_broker
    client = TlsClient(b.tls_port, "dashboard", b.passwords["dashboard"], ca=b.pki.ca)
    assert client.connect().getName() == "Success"
    client.subscribe("edgesiam/#")
    yield client
    client.stop()


def test_a_device_over_mutual_tls_publishes_its_topics_and_answers_commands(
    secure_broker: SecureBroker, events_gallery: Path, tmp_path: Path, dashboard: TlsClient
) -> None:
    b = secure_broker
    ha = Subscriber(
        b.broker.host, b.plain_port, ["homeassistant/#"],
        username="homeassistant", password=b.passwords["homeassistant"],
    ).start()  # fmt: skip
    device = start_secure_device(b, tmp_path / "kitchen", events_gallery, "kitchen")
    try:
        assert wait_until(lambda: b"online" in statuses(dashboard, "kitchen"), 60), device.text
        device.feed(to_pcm(voice(2.0, seed=7)))  # 2 s at the events bundle's 0.25 s hop
        assert wait_until(lambda: len(dashboard.on("edgesiam/kitchen/event")) >= 3, 60), device.text
        events = [m.json() for m in dashboard.on("edgesiam/kitchen/event")]
        seqs = sorted({e["seq"] for e in events})  # at least once: a resend may repeat one
        assert seqs == list(range(1, len(seqs) + 1))
        assert {e["device"] for e in events} == {"kitchen"}
        assert ha.wait_for("homeassistant/event/kitchen/edgesiam_match/config", timeout=30)

        # the dashboard's command reaches the device; its result comes back to the dashboard
        assert (
            dashboard.publish("edgesiam/kitchen/cmd/list", b'{"correlation_id": "sec-1"}')
            == "Success"
        )
        assert wait_until(lambda: dashboard.on("edgesiam/kitchen/cmd/list/result"), 30), device.text
        result = dashboard.on("edgesiam/kitchen/cmd/list/result")[0].json()
        assert result["ok"] is True and result["correlation_id"] == "sec-1"
        assert [entry["label"] for entry in result["result"]["labels"]] == ["voice"]
        assert wait_until(lambda: dashboard.on("edgesiam/kitchen/metrics"), 30)
        running_lines = command_lines()
    finally:
        text = device.finish()
        ha.stop()
    assert device.process.returncode == 0, text
    assert dashboard.on("edgesiam/kitchen/status")[-1].payload == b"offline"

    # no password anywhere: device output at debug level, the broker's log, command lines
    assert "DEBUG" in text  # the device really logged at debug level
    for user, password in b.passwords.items():
        assert password not in text, f"{user}'s password in the device's output"
        assert password not in b.log, f"{user}'s password in the broker's log"
        assert not any(password in line for line in running_lines), (
            f"{user}'s password on a command line"
        )
        assert password not in device.config.read_text()  # the config names the file only


def test_a_device_login_cannot_write_another_devices_topics(
    secure_broker: SecureBroker, events_gallery: Path, tmp_path: Path, dashboard: TlsClient
) -> None:
    """The device's own credentials and certificate, used by anything else than edgesiam: the
    broker refuses every topic of another device."""
    b = secure_broker
    rogue = TlsClient(
        b.mtls_port, "hallway", b.passwords["hallway"], ca=b.pki.ca,
        cert=b.pki.cert("hallway"), key=b.pki.key("hallway"),
    )  # fmt: skip
    assert rogue.connect().getName() == "Success"
    try:
        for topic in ("edgesiam/kitchen/event", "edgesiam/kitchen/status",
                      "edgesiam/kitchen/cmd/forget", "edgesiam/kitchen/cmd/list/result"):  # fmt: skip
            assert rogue.publish(topic, b'{"forged": true}', retain=True) == "Not authorized", topic
        assert rogue.publish("edgesiam/hallway/event") == "Success"
        assert wait_until(lambda: dashboard.on("edgesiam/hallway/event"), 10)
        assert [m for m in dashboard.messages if b"forged" in m.payload] == []
    finally:
        rogue.stop()


def test_a_device_with_a_wrong_password_is_refused_and_says_so_without_the_password(
    secure_broker: SecureBroker, events_gallery: Path, tmp_path: Path, dashboard: TlsClient
) -> None:
    b = secure_broker
    wrong = "not-" + b.passwords["hallway"][::-1]
    seen = len(b.log)
    device = start_secure_device(
        b, tmp_path / "impostor", events_gallery, "hallway", password=wrong
    )
    try:
        assert wait_until(lambda: "refused" in device.text, 60), device.text
        assert wait_until(lambda: "disconnected, not authorised" in b.log[seen:], 10), b.log
    finally:
        text = device.finish()
    assert wrong not in text and b.passwords["hallway"] not in text
    assert wrong not in b.log
    assert [m for m in dashboard.on("edgesiam/hallway/status") if m.payload == b"online"] == []

"""Who may connect to the secured broker, over which listener, and with what.

``tests/runtime/test_mosquitto_configs.py`` checks the shipped files' ACL over the loopback
listener; here the same files guard the TLS listeners: anonymous clients, wrong passwords,
another user's password, clients that do not trust the CA, and clients without a certificate
on the listener that requires one are all refused.
"""

from __future__ import annotations

import ssl

import pytest

from tests.support.mqtt import wait_until
from tests.support.secure_broker import SecureBroker
from tests.support.tls_client import TlsClient

pytestmark = pytest.mark.timeout(120)

REFUSED = ("Not authorized", "Bad user name or password")


def connack(client: TlsClient) -> str:
    try:
        return str(client.connect().getName())
    finally:
        client.stop()


@pytest.mark.parametrize("listener", ["tls", "mtls", "plain"])
def test_anonymous_clients_are_refused_on_every_listener(
    secure_broker: SecureBroker, listener: str
) -> None:
    b = secure_broker
    client = {
        "tls": TlsClient(b.tls_port, ca=b.pki.ca),
        "mtls": TlsClient(
            b.mtls_port, ca=b.pki.ca, cert=b.pki.cert("kitchen"), key=b.pki.key("kitchen")
        ),
        "plain": TlsClient(b.plain_port, tls=False),
    }[listener]
    assert connack(client) in REFUSED


@pytest.mark.parametrize(
    ("user", "password_of"),
    [("dashboard", None), ("kitchen", "hallway"), ("nobody", "dashboard"), ("dashboard", "")],
)
def test_wrong_passwords_are_refused(
    secure_broker: SecureBroker, user: str, password_of: str | None
) -> None:
    b = secure_broker
    password = "wrong-password" if password_of is None else b.passwords.get(password_of, "")
    assert connack(TlsClient(b.tls_port, user, password, ca=b.pki.ca)) in REFUSED
    right = TlsClient(b.tls_port, "dashboard", b.passwords["dashboard"], ca=b.pki.ca)
    assert connack(right) == "Success"  # the listener itself works


def test_a_client_that_does_not_trust_the_ca_fails_the_handshake(
    secure_broker: SecureBroker,
) -> None:
    b = secure_broker
    for ca in (b.pki.rogue_ca, None):  # another CA; the system's CA store
        client = TlsClient(b.tls_port, "dashboard", b.passwords["dashboard"], ca=ca)
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            client.connect()
        client.stop()


def test_the_shipped_listener_requires_a_client_certificate(secure_broker: SecureBroker) -> None:
    b = secure_broker
    seen = len(b.log)
    without = TlsClient(b.mtls_port, "kitchen", b.passwords["kitchen"], ca=b.pki.ca)
    with pytest.raises((ssl.SSLError, OSError, TimeoutError)):
        # with TLS 1.3 the client finishes its handshake first; the broker's refusal then ends
        # the connection before any CONNACK
        reason = without.connect(timeout=3)
        raise AssertionError(f"connected without a client certificate: {reason}")
    without.stop()
    assert "peer did not return a certificate" in b.log[seen:]
    ok = TlsClient(
        b.mtls_port, "kitchen", b.passwords["kitchen"], ca=b.pki.ca,
        cert=b.pki.cert("kitchen"), key=b.pki.key("kitchen"),
    )  # fmt: skip
    assert connack(ok) == "Success"
    # a valid certificate is not a password: the login is still checked
    wrong = TlsClient(
        b.mtls_port, "kitchen", "wrong", ca=b.pki.ca,
        cert=b.pki.cert("kitchen"), key=b.pki.key("kitchen"),
    )  # fmt: skip
    assert connack(wrong) in REFUSED


def test_a_device_reads_and_writes_only_its_own_topics_over_tls(
    secure_broker: SecureBroker,
) -> None:
    b = secure_broker

    def login(user: str) -> TlsClient:
        client = TlsClient(b.tls_port, user, b.passwords[user], ca=b.pki.ca)
        assert client.connect().getName() == "Success"
        return client

    kitchen, hallway, watcher = login("kitchen"), login("hallway"), login("dashboard")
    try:
        assert watcher.subscribe("edgesiam/#").startswith("Granted")
        # Mosquitto grants any subscription and checks each message against the read rules
        # before delivering it: kitchen listens everywhere it can name
        for topic in ("edgesiam/hallway/#", "edgesiam/+/event", "edgesiam/kitchen/cmd/+"):
            kitchen.subscribe(topic)
        # forbidden writes: another device's topics, commands to any device, HA's own topics
        for topic in (
            "edgesiam/hallway/event",
            "edgesiam/hallway/status",
            "edgesiam/hallway/cmd/forget",
            "edgesiam/kitchen/cmd/forget",
            "homeassistant/event/hallway/edgesiam_match/config",
            "homeassistant/status",
        ):
            assert kitchen.publish(topic) == "Not authorized", topic
        assert kitchen.publish("edgesiam/kitchen/event") == "Success"
        assert kitchen.publish("edgesiam/kitchen/cmd/list/result") == "Success"
        # hallway's own traffic, then a command for kitchen: kitchen must get only the latter
        assert hallway.publish("edgesiam/hallway/event") == "Success"
        assert watcher.publish("edgesiam/hallway/cmd/list") == "Success"
        assert watcher.publish("edgesiam/kitchen/cmd/list") == "Success"
        assert wait_until(lambda: len(kitchen.on("edgesiam/kitchen/cmd/list")) == 1)
        assert [m.topic for m in kitchen.messages] == ["edgesiam/kitchen/cmd/list"]
        # the dashboard saw what was allowed, nothing that was refused
        assert wait_until(lambda: len(watcher.on("edgesiam/kitchen/cmd/list")) == 1)
        assert len(watcher.on("edgesiam/kitchen/event")) == 1
        assert len(watcher.on("edgesiam/hallway/event")) == 1  # hallway's own, not kitchen's
        for refused in ("edgesiam/hallway/status", "edgesiam/hallway/cmd/forget",
                        "edgesiam/kitchen/cmd/forget"):  # fmt: skip
            assert watcher.on(refused) == [], refused
    finally:
        for client in (kitchen, hallway, watcher):
            client.stop()


def test_the_dashboard_reads_everything_and_writes_only_commands(
    secure_broker: SecureBroker,
) -> None:
    b = secure_broker
    dash = TlsClient(b.tls_port, "dashboard", b.passwords["dashboard"], ca=b.pki.ca)
    assert dash.connect().getName() == "Success"
    try:
        assert dash.subscribe("edgesiam/#").startswith("Granted")
        for topic in (
            "edgesiam/kitchen/event",
            "edgesiam/kitchen/status",
            "edgesiam/kitchen/metrics",
            "edgesiam/kitchen/cmd/list/result",
            "homeassistant/event/kitchen/edgesiam_match/config",
            "edgesiam/kitchen",
            "other/topic",
        ):
            assert dash.publish(topic) == "Not authorized", topic
        assert dash.publish("edgesiam/kitchen/cmd/enroll") == "Success"
        # Home Assistant's discovery configs are not the dashboard's to read (its birth message,
        # homeassistant/status, is: every client may read it, by a "pattern" line of the ACL)
        dash.subscribe("homeassistant/#")
        kitchen = TlsClient(b.tls_port, "kitchen", b.passwords["kitchen"], ca=b.pki.ca)
        assert kitchen.connect().getName() == "Success"
        config = "homeassistant/sensor/kitchen/edgesiam_rss_mb/config"
        assert kitchen.publish(config) == "Success"
        kitchen.stop()
        assert dash.publish("edgesiam/kitchen/cmd/list") == "Success"
        assert wait_until(lambda: len(dash.on("edgesiam/kitchen/cmd/list")) == 1)
        assert dash.on(config) == []
        assert len(dash.on("edgesiam/kitchen/cmd/enroll")) == 1
    finally:
        dash.stop()

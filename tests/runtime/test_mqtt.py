"""MqttPublisher against a real Mosquitto: order, durability, availability, security."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgesiam.errors import ConfigError
from edgesiam.mqtt.client import MqttSettings, parse_broker_url
from edgesiam.mqtt.contract import SCHEMA_EVENT, event_builder
from edgesiam.mqtt.publisher import MqttPublisher
from edgesiam.runtime.outbox import Event, Outbox
from edgesiam.runtime.publishers import MemoryPublisher, Publisher
from tests.support.mqtt import MosquittoBroker, Subscriber, free_port, password_file, wait_until

HERE = Path(__file__).parent


def add_event(outbox: Outbox, device: str, i: int, label: str = "alice") -> Event:
    build = event_builder(
        device=device, model="tiny", label=label, score=0.9, threshold=0.6, offset_s=i * 0.5
    )
    return outbox.add(build)


@pytest.fixture
def make_publisher(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> Iterator[Callable[..., tuple[MqttPublisher, Outbox]]]:
    made: list[tuple[MqttPublisher, Outbox]] = []

    def make(device: str = "dev1", **settings: Any) -> tuple[MqttPublisher, Outbox]:
        outbox = Outbox(tmp_path / f"{device}.db", id_prefix=device)
        options: dict[str, Any] = {"url": mosquitto.url, "device_id": device}
        options.update(settings)
        publisher = MqttPublisher(MqttSettings(**options), outbox, "tiny", labels=["alice", "bob"])
        made.append((publisher, outbox))
        return publisher, outbox

    yield make
    for publisher, outbox in made:
        publisher.stop(drain_timeout_s=0)
        outbox.close()


def seqs(messages: list[Any]) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in messages]


# ------------------------------------------------------------------------------------------------
# settings


def test_parse_broker_url() -> None:
    a = parse_broker_url("mqtt://broker.lan")
    assert (a.host, a.port, a.tls, a.username) == ("broker.lan", 1883, False, None)
    b = parse_broker_url("mqtts://dev1@broker.lan")
    assert (b.host, b.port, b.tls, b.username) == ("broker.lan", 8883, True, "dev1")
    assert parse_broker_url("mqtt://[::1]:1884").port == 1884
    for bad in ("http://x", "mqtt://", "mqtt://h:99999", "mqtt://h/topic", "broker.lan:1883"):
        with pytest.raises(ConfigError):
            parse_broker_url(bad)


@pytest.mark.parametrize(
    "url",
    [
        "mqtts://dev1:hunter2@broker.lan",
        "http://dev1:hunter2@broker.lan",  # a wrong scheme too: the password is checked first
        "mqtt://dev1:hunter2@broker.lan/topic",
        "mqtt://dev1:hunter2@",
    ],
)
def test_password_in_the_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_broker_url(url)
    assert "hunter2" not in str(info.value)


def test_plaintext_password_is_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", "s3cret-value")
    with pytest.raises(ConfigError, match="without TLS") as info:
        MqttSettings.from_dict({"url": "mqtt://u@h", "device_id": "d", "password_env": "PW"})
    assert "s3cret-value" not in str(info.value)
    ok = MqttSettings(
        url="mqtt://u@h", device_id="d", password_env="PW", allow_plaintext_password=True
    )
    assert ok.resolve_password() == "s3cret-value"
    tls = MqttSettings(url="mqtts://u@h", device_id="d", password_env="PW")
    assert tls.resolve_password() == "s3cret-value"
    assert "s3cret" not in repr(MqttSettings(url="mqtts://u@h", device_id="d", password="s3cret"))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"device_id": "a/b"}, "device_id"),
        ({"device_id": "d", "prefix": "edge/+"}, "prefix"),
        ({"device_id": "d", "url": "mqtts://u@h", "password": "p", "password_env": "X"}, "one way"),
        ({"device_id": "d", "url": "mqtts://h", "password": "p"}, "username"),
        ({"device_id": "d", "tls_ca": "/ca.pem"}, "mqtts"),
        ({"device_id": "d", "url": "mqtts://h", "tls_cert": "/c.pem"}, "key"),
        ({"device_id": "d", "reconnect_min_s": 10, "reconnect_max_s": 5}, "reconnect"),
        ({"device_id": "d", "colour": "blue"}, "colour"),
    ],
)
def test_settings_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MqttSettings.from_dict(options)


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    s = MqttSettings(
        url="mqtts://u@h", device_id="d", password_file=tmp_path / "pw", client_id="fixed"
    )
    assert s.resolve_password() == "from-file"
    assert s.effective_client_id == "fixed"
    monkeypatch.delenv("NO_SUCH_PW", raising=False)
    missing = MqttSettings(url="mqtts://u@h", device_id="d", password_env="NO_SUCH_PW")
    with pytest.raises(ConfigError, match="NO_SUCH_PW"):
        missing.resolve_password()
    gone = MqttSettings(url="mqtts://u@h", device_id="d", password_file=tmp_path / "nope")
    with pytest.raises(ConfigError, match="cannot be read"):
        gone.resolve_password()


def test_topics() -> None:
    t = MqttSettings(device_id="kitchen", prefix="home/edgesiam").topics
    assert t.event == "home/edgesiam/kitchen/event"
    assert t.status == "home/edgesiam/kitchen/status"
    assert t.commands == "home/edgesiam/kitchen/cmd/+"
    assert t.command_result("enroll") == "home/edgesiam/kitchen/cmd/enroll/result"
    assert t.verb_of("home/edgesiam/kitchen/cmd/enroll") == "enroll"
    assert t.verb_of("home/edgesiam/kitchen/cmd/enroll/result") is None
    assert t.verb_of("home/edgesiam/kitchen/cmd/") is None
    assert t.verb_of("home/edgesiam/other/cmd/enroll") is None


def test_event_payload_has_the_contract_fields(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", id_prefix="d") as box:
        e = add_event(box, "d", 3)
    assert e.payload["schema"] == SCHEMA_EVENT
    for key, kind in [
        ("id", str),
        ("seq", int),
        ("device", str),
        ("ts", float),
        ("label", str),
        ("event_type", str),
        ("score", float),
        ("threshold", float),
        ("offset_s", float),
        ("model", str),
    ]:
        assert isinstance(e.payload[key], kind), key
    assert e.payload["id"] == e.id and e.payload["seq"] == e.seq == 1


# ------------------------------------------------------------------------------------------------
# memory publisher


def test_memory_publisher_records_and_acks(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        left = add_event(box, "d", 0)  # left by a previous run: replayed on start
        pub = MemoryPublisher("d", box)
        assert isinstance(pub, Publisher)
        pub.start()
        pub.publish_event(add_event(box, "d", 1))
        pub.publish_near_miss({"label": "bob", "score": 0.5, "threshold": 0.6})
        pub.publish_metrics({"windows_per_s": 3.0})
        pub.stop()
        assert [e["seq"] for e in pub.events] == [left.seq, left.seq + 1]
        assert box.depth == 0
        assert pub.on_topic("edgesiam/d/status") == ["online", "offline"]
        assert pub.on_topic("edgesiam/d/near_miss")[0]["label"] == "bob"
        assert pub.on_topic("edgesiam/d/metrics")[0]["outbox_depth"] == 0
        no_handler = pub.command("list", b"{}")
        assert no_handler["ok"] is False and no_handler["error_code"] == "unavailable"


# ------------------------------------------------------------------------------------------------
# against Mosquitto


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_events_arrive_in_order_with_qos1_and_leave_the_outbox(
    protocol: str,
    make_publisher: Callable[..., tuple[MqttPublisher, Outbox]],
    subscriber: Callable[..., Subscriber],
) -> None:
    sub = subscriber("edgesiam/dev1/#")
    publisher, outbox = make_publisher(protocol=protocol)
    publisher.start()
    for i in range(200):
        publisher.publish_event(add_event(outbox, "dev1", i))
    events = sub.wait_for("edgesiam/dev1/event", 200)
    assert seqs(events) == list(range(1, 201))
    assert all(m.qos == 1 for m in events)
    assert wait_until(lambda: outbox.depth == 0)
    first = events[0].json()
    assert first["schema"] == SCHEMA_EVENT and first["device"] == "dev1"
    assert sub.on("edgesiam/dev1/status")[0].payload == b"online"


def test_status_online_is_retained_and_offline_follows_a_clean_stop(
    make_publisher: Callable[..., tuple[MqttPublisher, Outbox]],
    subscriber: Callable[..., Subscriber],
) -> None:
    publisher, _ = make_publisher()
    watcher = subscriber("edgesiam/dev1/status")
    publisher.start()
    assert wait_until(lambda: publisher.connected)
    watcher.wait_for("edgesiam/dev1/status")  # the broker has it, so it is retained from now on
    late = subscriber("edgesiam/dev1/status")  # joins after: gets the retained message
    (online,) = late.wait_for("edgesiam/dev1/status")
    assert (online.payload, online.retain) == (b"online", True)
    publisher.stop()
    assert [m.payload for m in late.wait_for("edgesiam/dev1/status", 2)] == [b"online", b"offline"]
    after = subscriber("edgesiam/dev1/status")
    (retained,) = after.wait_for("edgesiam/dev1/status")
    assert (retained.payload, retained.retain) == (b"offline", True)


def test_offline_comes_from_the_last_will_when_the_process_is_killed(
    mosquitto: MosquittoBroker, subscriber: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscriber("edgesiam/killed/#")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "publisher_proc.py"),
            mosquitto.url,
            "killed",
            str(tmp_path / "k.db"),
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE.parent.parent,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert seqs(sub.wait_for("edgesiam/killed/event", 5)) == [1, 2, 3, 4, 5]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    status = sub.wait_for("edgesiam/killed/status", 2, timeout=10)
    assert [m.payload for m in status] == [b"online", b"offline"]
    with Outbox(tmp_path / "k.db") as box:
        assert box.depth == 0


def test_broker_killed_mid_stream_leaves_no_gap_at_a_persistent_subscriber(
    mosquitto: MosquittoBroker,
    make_publisher: Callable[..., tuple[MqttPublisher, Outbox]],
    subscriber: Callable[..., Subscriber],
) -> None:
    """Events in flight when the broker dies (never acknowledged) are sent again; nothing is lost."""
    sub = subscriber("edgesiam/dev1/event", client_id="dashboard", persistent=True)
    publisher, outbox = make_publisher(reconnect_min_s=1, reconnect_max_s=1)
    publisher.start()
    assert wait_until(lambda: publisher.connected)
    for i in range(100):
        publisher.publish_event(add_event(outbox, "dev1", i))
    assert wait_until(lambda: outbox.depth == 0)
    assert mosquitto.process is not None
    mosquitto.process.send_signal(signal.SIGSTOP)  # frozen: PUBLISHes go out, no PUBACK comes back
    for i in range(100, 150):
        publisher.publish_event(add_event(outbox, "dev1", i))
    time.sleep(0.2)
    assert outbox.depth == 50
    mosquitto.stop(signal.SIGKILL)  # the broker dies without having read them
    for i in range(150, 200):
        publisher.publish_event(add_event(outbox, "dev1", i))
    mosquitto.start()
    assert wait_until(lambda: outbox.depth == 0, timeout=20), outbox.depth
    # redelivered duplicates count as messages: wait for every seq, not for 200 messages
    wait_until(lambda: set(seqs(sub.on("edgesiam/dev1/event"))) >= set(range(1, 201)), 20)
    got = seqs(sub.on("edgesiam/dev1/event"))
    assert set(got) == set(range(1, 201)), f"missing: {sorted(set(range(1, 201)) - set(got))}"
    first_seen = list(dict.fromkeys(got))
    assert first_seen == sorted(first_seen)  # duplicates allowed (at least once), order kept
    assert publisher.connects >= 2


def test_broker_restart_keeps_the_queue_of_an_offline_persistent_subscriber(
    mosquitto: MosquittoBroker,
    make_publisher: Callable[..., tuple[MqttPublisher, Outbox]],
    subscriber: Callable[..., Subscriber],
) -> None:
    """What the broker acknowledged is its to keep: with persistence it survives a restart."""
    sub = subscriber("edgesiam/dev1/event", client_id="dashboard", persistent=True)
    sub.stop()  # away, with a persistent session: the broker queues for it
    publisher, outbox = make_publisher(reconnect_min_s=1, reconnect_max_s=1)
    publisher.start()
    for i in range(50):
        publisher.publish_event(add_event(outbox, "dev1", i))
    assert wait_until(lambda: outbox.depth == 0)
    mosquitto.restart()
    for i in range(50, 100):
        publisher.publish_event(add_event(outbox, "dev1", i))
    assert wait_until(lambda: outbox.depth == 0, timeout=20)
    back = subscriber("edgesiam/dev1/event", client_id="dashboard", persistent=True)
    got = seqs(back.wait_for("edgesiam/dev1/event", 100, timeout=20))
    assert list(dict.fromkeys(got)) == list(range(1, 101))


def test_events_stored_while_the_broker_is_down_are_sent_when_it_comes_up(
    mosquitto: MosquittoBroker,
    make_publisher: Callable[..., tuple[MqttPublisher, Outbox]],
    subscriber: Callable[..., Subscriber],
) -> None:
    sub = subscriber("edgesiam/dev1/event", client_id="dash", persistent=True)
    mosquitto.stop()
    publisher, outbox = make_publisher(reconnect_min_s=1, reconnect_max_s=1)
    publisher.start()
    for i in range(20):
        publisher.publish_event(add_event(outbox, "dev1", i))
    time.sleep(0.3)
    assert outbox.depth == 20 and not publisher.connected
    mosquitto.start()
    assert seqs(sub.wait_for("edgesiam/dev1/event", 20, timeout=15))[:20] == list(range(1, 21))
    assert wait_until(lambda: outbox.depth == 0)


def test_a_restarted_publisher_replays_what_was_not_acknowledged(
    mosquitto: MosquittoBroker,
    make_publisher: Callable[..., tuple[MqttPublisher, Outbox]],
    subscriber: Callable[..., Subscriber],
    tmp_path: Path,
) -> None:
    sub = subscriber("edgesiam/dev1/event")
    with Outbox(tmp_path / "dev1.db", id_prefix="dev1") as box:  # the previous run's leftovers
        for i in range(10):
            add_event(box, "dev1", i)
    publisher, outbox = make_publisher()
    publisher.start()
    publisher.publish_event(add_event(outbox, "dev1", 10))
    assert seqs(sub.wait_for("edgesiam/dev1/event", 11)) == list(range(1, 12))
    assert wait_until(lambda: outbox.depth == 0)


def test_near_miss_and_metrics_have_their_own_topics(
    make_publisher: Callable[..., tuple[MqttPublisher, Outbox]],
    subscriber: Callable[..., Subscriber],
) -> None:
    sub = subscriber("edgesiam/dev1/#")
    publisher, _ = make_publisher()
    publisher.start()
    assert wait_until(lambda: publisher.connected)
    publisher.publish_near_miss({"label": "bob", "score": 0.55, "threshold": 0.6, "offset_s": 1.0})
    publisher.publish_metrics({"windows_per_s": 31.2, "inference_ms_p50": 0.04})
    (near,) = sub.wait_for("edgesiam/dev1/near_miss")
    (metrics,) = sub.wait_for("edgesiam/dev1/metrics")
    assert near.json()["schema"] == "edgesiam.near_miss.v1" and near.json()["label"] == "bob"
    m = metrics.json()
    assert m["schema"] == "edgesiam.metrics.v1" and m["windows_per_s"] == 31.2
    assert m["outbox_depth"] == 0 and m["outbox_dropped"] == 0
    assert sub.on("edgesiam/dev1/event") == []


def test_discovery_is_retained_and_follows_the_labels(
    make_publisher: Callable[..., tuple[MqttPublisher, Outbox]],
    subscriber: Callable[..., Subscriber],
) -> None:
    topic = "homeassistant/event/dev1/edgesiam_match/config"
    watcher = subscriber("homeassistant/#")
    publisher, _ = make_publisher()
    publisher.start()
    assert wait_until(lambda: publisher.connected)
    watcher.wait_for(topic)  # the broker has it, so it is retained from now on
    ha = subscriber("homeassistant/#")
    (config,) = ha.wait_for(topic)
    assert config.retain and config.json()["event_types"] == ["alice", "bob"]
    publisher.set_labels(["alice", "bob", "carol"])
    assert ha.wait_for(topic, 2)[1].json()["event_types"] == ["alice", "bob", "carol"]
    ha.publish("homeassistant/status", "online")  # HA restarted: it asks for discovery again
    assert len(ha.wait_for(topic, 3)) == 3


# ------------------------------------------------------------------------------------------------
# security


PASSWORD = "Tr0ub4dor&3-never-logged"


def test_tls_with_client_certificate_and_password_never_logs_the_password(
    make_mosquitto: Callable[..., MosquittoBroker],
    certificates: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pw = password_file(tmp_path, {"dev1": PASSWORD})
    broker = make_mosquitto(
        [
            f"cafile {certificates / 'ca.crt'}",
            f"certfile {certificates / 'server.crt'}",
            f"keyfile {certificates / 'server.key'}",
            "require_certificate true",
            "allow_anonymous false",
            f"password_file {pw}",
        ],
        name="tls",
    )
    monkeypatch.setenv("EDGESIAM_TEST_PW", PASSWORD)
    caplog.set_level(logging.DEBUG)
    settings = MqttSettings(
        url=f"mqtts://dev1@localhost:{broker.port}",
        device_id="dev1",
        password_env="EDGESIAM_TEST_PW",
        tls_ca=certificates / "ca.crt",
        tls_cert=certificates / "client.crt",
        tls_key=certificates / "client.key",
    )
    with Outbox(tmp_path / "o.db") as outbox:
        publisher = MqttPublisher(settings, outbox, "tiny")
        publisher.start()
        publisher.publish_event(add_event(outbox, "dev1", 0))
        assert wait_until(lambda: outbox.depth == 0, timeout=10), broker.log_text()
        publisher.stop()
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "connecting to localhost" in logged and "Sending CONNECT" in logged
    assert PASSWORD not in logged


def test_a_wrong_password_is_reported_once_and_never_logged(
    make_mosquitto: Callable[..., MosquittoBroker],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pw = password_file(tmp_path, {"dev1": "the-right-one"})
    broker = make_mosquitto(["allow_anonymous false", f"password_file {pw}"], name="auth")
    caplog.set_level(logging.DEBUG)
    settings = MqttSettings(
        url=f"mqtt://dev1@127.0.0.1:{broker.port}",
        device_id="dev1",
        password=PASSWORD,
        allow_plaintext_password=True,
        reconnect_min_s=1,
        reconnect_max_s=1,
    )
    with Outbox(tmp_path / "o.db") as outbox:
        publisher = MqttPublisher(settings, outbox, "tiny")
        publisher.start()
        time.sleep(1.6)  # two refused attempts
        assert not publisher.connected
        publisher.stop(drain_timeout_s=0)
    refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(refusals) == 1
    assert PASSWORD not in caplog.text + "".join(repr(r.args) for r in caplog.records)


def test_stop_returns_promptly_when_the_broker_was_never_reachable(tmp_path: Path) -> None:
    settings = MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}", device_id="d")
    with Outbox(tmp_path / "o.db") as outbox:
        publisher = MqttPublisher(settings, outbox, "tiny")
        publisher.start()
        publisher.publish_event(add_event(outbox, "d", 0))
        time.sleep(0.3)
        t0 = time.monotonic()
        publisher.stop()
        assert time.monotonic() - t0 < 3
        assert outbox.depth == 1  # kept for the next run


def test_a_plaintext_password_never_reaches_the_broker_unless_allowed(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="without TLS"):
        MqttSettings.from_dict(
            {
                "url": f"mqtt://dev1@127.0.0.1:{mosquitto.port}",
                "device_id": "dev1",
                "password": "pw",
            }
        )


# ------------------------------------------------------------------------------------------------
# latency (slow): publish → subscriber through Mosquitto


@pytest.mark.slow
def test_latency_publish_to_subscriber(
    make_publisher: Callable[..., tuple[MqttPublisher, Outbox]],
    subscriber: Callable[..., Subscriber],
) -> None:
    import numpy as np

    sub = subscriber("edgesiam/lat/event")
    publisher, outbox = make_publisher(device="lat", homeassistant=False)
    publisher.start()
    assert wait_until(lambda: publisher.connected)
    sent: dict[int, float] = {}
    add_ms = []
    for i in range(500):
        t0 = time.time()
        event = add_event(outbox, "lat", i)
        t1 = time.time()
        publisher.publish_event(event)
        sent[event.seq] = t1
        add_ms.append((t1 - t0) * 1e3)
        time.sleep(0.01)
    got = sub.wait_for("edgesiam/lat/event", 500, timeout=30)
    lat = np.array([(m.at - sent[m.json()["seq"]]) * 1e3 for m in got])
    total = np.array(
        [(m.at - sent[m.json()["seq"]]) * 1e3 + a for m, a in zip(got, add_ms, strict=True)]
    )
    print(
        f"\npublish→subscriber over {len(lat)} events: p50 {np.percentile(lat, 50):.2f} ms, "
        f"p95 {np.percentile(lat, 95):.2f} ms; outbox add p50 {np.percentile(add_ms, 50):.2f} ms, "
        f"p95 {np.percentile(add_ms, 95):.2f} ms; add+publish→subscriber p50 "
        f"{np.percentile(total, 50):.2f} ms, p95 {np.percentile(total, 95):.2f} ms"
    )
    assert np.percentile(lat, 95) < 200


def test_an_event_the_broker_refuses_is_counted_and_not_retried_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An MQTT 5 PUBACK with an error reason (e.g. Not authorized) drops the event, loudly."""
    with Outbox(tmp_path / "o.db") as outbox:
        publisher = MqttPublisher(MqttSettings(device_id="d"), outbox, "tiny")
        event = add_event(outbox, "d", 0)
        publisher._inflight[7] = event.seq  # what the sender records when it publishes
        publisher._acks.put((7, True, "Not authorized"))
        publisher._acks.put((8, False, "Success"))  # a status or result message: not an event
        publisher._apply_acks()
        assert outbox.depth == 0 and publisher.rejected == 1
    assert "refused event seq 1 (Not authorized)" in caplog.text


def test_paho_is_a_v2_client(make_publisher: Callable[..., tuple[MqttPublisher, Outbox]]) -> None:
    publisher, _ = make_publisher()
    client = publisher._make_client()
    assert client._callback_api_version == CallbackAPIVersion.VERSION2
    assert client._client_id == b"edgesiam-dev1"


# --- a broker that cannot be reached ------------------------------------------------------------


def test_an_unreachable_broker_is_retried_with_backoff_and_the_reason_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edgesiam.mqtt.client")
    port = free_port()  # nothing listens there
    settings = MqttSettings(
        url=f"mqtt://127.0.0.1:{port}", device_id="pi", reconnect_min_s=1, reconnect_max_s=2
    )
    with Outbox(tmp_path / "o.db", id_prefix="pi") as outbox:
        publisher = MqttPublisher(settings, outbox, "tiny")
        publisher.start()
        try:
            assert wait_until(lambda: "attempt 3" in caplog.text, timeout=15)
        finally:
            publisher.stop()
    refused = f"connection refused by 127.0.0.1:{port}"
    assert publisher.last_error is not None and refused in publisher.last_error
    assert f"MQTT: {refused}" in caplog.text
    for delay, attempt in ((1, 1), (2, 2), (2, 3)):  # doubling, capped at reconnect_max_s
        assert f"retrying in {delay} s (attempt {attempt};" in caplog.text
    assert "Traceback" not in caplog.text


def test_dns_and_tls_failures_name_their_reason(
    make_mosquitto: Callable[..., MosquittoBroker], certificates: Path, tmp_path: Path
) -> None:
    plain = make_mosquitto(name="plain")
    tls = make_mosquitto(
        [
            f"cafile {certificates / 'ca.crt'}",
            f"certfile {certificates / 'server.crt'}",
            f"keyfile {certificates / 'server.key'}",
        ],
        name="tls",
    )
    cases = {
        "mqtt://no-such-broker.invalid:1883": "cannot resolve the host name 'no-such-broker.invalid'",
        f"mqtts://127.0.0.1:{plain.port}": f"TLS handshake with 127.0.0.1:{plain.port} failed",
        f"mqtts://localhost:{tls.port}": f"TLS: the certificate of localhost:{tls.port} was not "
        "accepted (self-signed certificate",  # the test CA is not one of the system's
    }
    for url, reason in cases.items():
        with Outbox(tmp_path / "o.db", id_prefix="pi") as outbox:
            publisher = MqttPublisher(MqttSettings(url=url, device_id="pi"), outbox, "tiny")
            publisher.start()
            try:
                assert wait_until(lambda: publisher.last_error is not None, timeout=15)  # noqa: B023
            finally:
                publisher.stop()
        assert reason in str(publisher.last_error)

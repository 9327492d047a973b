"""The ingester against a real Mosquitto: what devices publish lands in the history, once, and
nothing acknowledged is lost across the dashboard's restarts, the broker's restarts or a failed
write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgesiam.dashboard.history import History
from edgesiam.dashboard.ingest import Ingester, default_client_id
from edgesiam.errors import CommandFailed, HistoryError
from edgesiam.mqtt.contract import Topics
from edgesiam.mqtt.homeassistant import discovery_messages
from tests.support.dashboard import Dashboard, event_payload, publisher
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until


@pytest.fixture(params=["sqlite", "postgresql"])
def history_backend(request: pytest.FixtureRequest) -> str:
    """These tests run against both history backends."""
    return str(request.param)


ROOT = Path(__file__).resolve().parents[2]


def test_events_status_near_misses_and_metrics_are_stored_once(dashboard: Dashboard) -> None:
    pub = publisher(dashboard.broker)
    pub.publish("edgesiam/pi1/status", "online", retain=True)
    for seq in (1, 2, 3, 2, 1):  # 2 and 1 again: a device resending after a lost PUBACK
        pub.publish("edgesiam/pi1/event", json.dumps(event_payload("pi1", seq)))
    pub.publish(
        "edgesiam/pi1/near_miss",
        json.dumps(
            {
                "schema": "edgesiam.near_miss.v1",
                "device": "pi1",
                "ts": 1.0,
                "label": "bob",
                "score": 0.61,
                "threshold": 0.7,
            }
        ),
        qos=0,
    )
    pub.publish(
        "edgesiam/pi1/metrics",
        json.dumps(
            {
                "schema": "edgesiam.metrics.v1",
                "device": "pi1",
                "ts": 1.0,
                "windows_per_s": 31.2,
                "rss_mb": 70.5,
            }
        ),
        qos=0,
    )
    h, c = dashboard.history, dashboard.ingester.counters
    assert wait_until(lambda: c.duplicates == 2 and (h.device("pi1") or {}).get("metrics"), 15)
    assert h.seqs("pi1") == [1, 2, 3]
    assert c.events_new == 3
    device = h.device("pi1")
    assert device is not None
    assert device["status"] == "online" and device["model"] == "speaker"
    assert device["metrics"]["windows_per_s"] == 31.2
    assert wait_until(lambda: len(h.near_misses("pi1")) == 1, 10)
    pub.stop()


def test_malformed_and_spoofed_messages_are_dropped_and_the_rest_goes_on(
    dashboard: Dashboard,
) -> None:
    pub = publisher(dashboard.broker)
    pub.publish("edgesiam/pi2/event", b"{not json")
    pub.publish("edgesiam/pi2/event", json.dumps([1, 2]))
    pub.publish("edgesiam/pi2/event", json.dumps(event_payload("other", 1)))  # wrong device
    pub.publish("edgesiam/pi2/event", json.dumps({**event_payload("pi2", 1), "seq": -3}))
    pub.publish("edgesiam/pi2/event", json.dumps(event_payload("pi2", 1)))
    h, c = dashboard.history, dashboard.ingester.counters
    assert wait_until(lambda: h.seqs("pi2") == [1], 15)
    assert c.invalid == 4
    assert h.seqs("other") == []
    pub.stop()


def test_the_last_will_of_a_killed_device_turns_it_offline(
    dashboard: Dashboard, tmp_path: Path
) -> None:
    """A real device publisher (``MqttPublisher`` with its outbox) in a process, SIGKILLed."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests/runtime/publisher_proc.py"),
            dashboard.broker.url,
            "willdev",
            str(tmp_path / "outbox.db"),
            "4",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        h = dashboard.history
        assert wait_until(
            lambda: (
                len(h.seqs("willdev")) == 4
                and (h.device("willdev") or {}).get("status") == "online"
            ),
            15,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert wait_until(lambda: (h.device("willdev") or {}).get("status") == "offline", 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_nothing_is_lost_while_the_dashboard_or_the_broker_is_down(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    path = tmp_path / "dash" / "history.sqlite3"
    history = History(path)
    ingester = Ingester(mosquitto.url, history)
    assert ingester.client_id == default_client_id(path)
    ingester.start()
    assert ingester.wait_connected(15)
    pub = publisher(mosquitto)
    pub.publish("edgesiam/dev/event", json.dumps(event_payload("dev", 1)))
    assert wait_until(lambda: history.seqs("dev") == [1], 15)
    ingester.stop()
    history.close()

    for seq in range(2, 12):  # the dashboard is away: its persistent session queues these
        pub.publish("edgesiam/dev/event", json.dumps(event_payload("dev", seq)))
    pub.stop()
    mosquitto.restart()  # a broker restart (persistence on) in between
    pub = publisher(mosquitto)
    for seq in range(12, 15):
        pub.publish("edgesiam/dev/event", json.dumps(event_payload("dev", seq)))

    history = History(path)  # the dashboard restarts: same data dir, same client id
    ingester = Ingester(mosquitto.url, history)
    ingester.start()
    try:
        assert wait_until(lambda: history.seqs("dev") == list(range(1, 15)), 20), history.seqs(
            "dev"
        )
    finally:
        pub.stop()
        ingester.stop()
        history.close()


class _DiskFullForSeq2(History):
    """A history that cannot store seq 2 until ``broken`` is cleared (a full disk, say)."""

    broken = True

    def add_event(self, payload: dict[str, Any], received: float | None = None) -> bool:
        if payload.get("seq") == 2 and self.broken:
            raise HistoryError("disk full (simulated)")
        return super().add_event(payload, received)


def test_an_event_that_could_not_be_stored_is_not_acknowledged(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:

    path = tmp_path / "history.sqlite3"
    history = _DiskFullForSeq2(path)
    ingester = Ingester(mosquitto.url, history)
    ingester.start()
    assert ingester.wait_connected(15)
    pub = publisher(mosquitto)
    for seq in (1, 2, 3):
        pub.publish("edgesiam/dev/event", json.dumps(event_payload("dev", seq)))
    assert wait_until(lambda: history.seqs("dev") == [1, 3], 15)
    assert ingester.counters.storage_errors == 1
    ingester.stop()  # the broker still holds seq 2, unacknowledged, in the session
    history.broken = False
    ingester = Ingester(mosquitto.url, history)
    ingester.start()
    try:
        assert wait_until(lambda: history.seqs("dev") == [1, 2, 3], 20), history.seqs("dev")
    finally:
        pub.stop()
        ingester.stop()
        history.close()


def test_commands_round_trip_and_update_the_labels(dashboard: Dashboard) -> None:
    """A stand-in device answers ``list`` on its command topic as the runtime does."""
    device = Subscriber(
        dashboard.broker.host, dashboard.broker.port, ["edgesiam/pi3/cmd/+"]
    ).start()

    def answer(client: Any, userdata: Any, message: Any) -> None:
        request = json.loads(message.payload)
        result = {
            "schema": "edgesiam.cmd_result.v1",
            "verb": "list",
            "ok": True,
            "correlation_id": request["correlation_id"],
            "result": {
                "labels": [
                    {"label": "carol", "recordings": 2},
                    {"label": "alice", "recordings": 3},
                ],
                "model": "speaker",
            },
            "ts": 1.0,
        }
        client.publish("edgesiam/pi3/cmd/list/result", json.dumps(result), qos=1)

    device.client.on_message = answer
    result = dashboard.ingester.command("pi3", "list", {}, timeout=15)
    assert result["ok"] is True and result["correlation_id"].startswith("dash-")
    stored = dashboard.history.device("pi3")
    assert stored is not None and stored["labels"] == ["alice", "carol"]
    assert dashboard.history.command_results("pi3")[0]["correlation_id"] == result["correlation_id"]
    device.stop()
    with pytest.raises(CommandFailed) as info:
        dashboard.ingester.command("nobody", "list", {}, timeout=0.5)
    assert info.value.code == "timeout"
    with pytest.raises(CommandFailed, match="unknown command"):
        dashboard.ingester.command("pi3", "format_disk", {})


def test_home_assistant_discovery_gives_labels_and_model(dashboard: Dashboard) -> None:
    pub = publisher(dashboard.broker)
    for topic, config in discovery_messages(
        topics=Topics("edgesiam", "pi4"), model_name="events-int8", labels=["knock", "bell"]
    ):
        pub.publish(topic, json.dumps(config), retain=True)
    h = dashboard.history
    assert wait_until(lambda: (h.device("pi4") or {}).get("labels") == ["bell", "knock"], 15)
    device = h.device("pi4")
    assert device is not None and device["model"] == "events-int8"
    pub.stop()

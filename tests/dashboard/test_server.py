"""The REST/JSON API and the live stream over real HTTP, fed from a real Mosquitto."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edgesiam.dashboard.auth import TokenAuth
from edgesiam.dashboard.history import History
from edgesiam.dashboard.ingest import Ingester
from edgesiam.dashboard.server import DashboardApp, DashboardServer, LiveFeed
from tests.support.dashboard import Dashboard, event_payload, publisher
from tests.support.mqtt import free_port, wait_until
from tests.support.signals import wav_bytes


@pytest.fixture(params=["sqlite", "postgresql"])
def history_backend(request: pytest.FixtureRequest) -> str:
    """These tests run against both history backends."""
    return str(request.param)


def test_rest_endpoints_serve_the_history(dashboard: Dashboard) -> None:
    h = dashboard.history
    base = 1_800_000_000.0
    h.set_status("alpha", "online")
    for seq in range(1, 6):
        h.add_event({**event_payload("alpha", seq, score=0.7 + seq / 100), "ts": base + seq})
    h.add_event({**event_payload("beta", 1), "ts": base + 2.5})
    h.add_near_miss(
        {"device": "alpha", "ts": base + 3.5, "label": "bob", "score": 0.66, "threshold": 0.7}
    )

    status, headers, body = dashboard.request("/api/devices")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert [d["device"] for d in body["devices"]] == ["alpha", "beta"]
    assert body["devices"][0]["status"] == "online" and body["devices"][0]["events"] == 5

    _, _, body = dashboard.request("/api/events?device=alpha&since=1800000003&limit=2")
    assert [e["seq"] for e in body["events"]] == [5, 4]
    _, _, body = dashboard.request("/api/events?limit=100")
    assert len(body["events"]) == 6
    _, _, body = dashboard.request("/api/near_misses?device=alpha")
    assert body["near_misses"][0]["label"] == "bob"
    _, _, body = dashboard.request("/api/timeline?device=alpha")
    assert [p["kind"] for p in body["points"]].count("near_miss") == 1
    assert [p["ts"] for p in body["points"]] == sorted(p["ts"] for p in body["points"])
    _, _, body = dashboard.request("/api/devices/beta")
    assert body["device"] == "beta"
    _, _, body = dashboard.request("/api/stats")
    assert body["history"]["events"] == 6 and body["broker"]["connected"] is True
    assert body["history"]["retention_days"] == 30.0


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/events?limit=0", 400),
        ("/api/events?limit=many", 400),
        ("/api/events?since=yesterday", 400),
        ("/api/events?device=a/b", 400),
        ("/api/timeline", 400),
        ("/api/devices/nobody", 404),
        ("/api/nothing", 404),
        ("/static/../history.sqlite3", 404),
        ("/nothing", 404),
    ],
)
def test_bad_requests_get_clear_errors(dashboard: Dashboard, path: str, status: int) -> None:
    got, _, body = dashboard.request(path)
    assert got == status
    assert body["ok"] is False and body["error"]


def test_the_page_is_served_with_a_strict_policy(dashboard: Dashboard) -> None:
    status, headers, page = dashboard.request("/")
    assert status == 200 and "<title>edgesiam dashboard</title>" in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "http://" not in page and "https://" not in page  # nothing from a CDN
    for name in ("app.js", "app.css"):
        _, _, text = dashboard.request(f"/static/{name}")
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_enroll_requests_are_checked_before_anything_is_sent(dashboard: Dashboard) -> None:
    good = base64.b64encode(wav_bytes()).decode()
    cases: list[tuple[Any, int, str]] = [
        (
            {
                "label": "alice",
                "wav_base64": base64.b64encode(b"not a wav at all, really" * 3).decode(),
            },
            400,
            "not a WAV",
        ),
        ({"label": "alice", "wav_base64": "!!!"}, 400, "base64"),
        ({"label": "a/b", "wav_base64": good}, 400, "label"),
        ({"label": " alice", "wav_base64": good}, 400, "label"),
        ({"label": "alice"}, 400, "wav_base64"),
        ({"label": "alice", "wav_base64": good, "extra": 1}, 400, "unknown"),
        (
            {
                "label": "alice",
                "wav_base64": base64.b64encode(
                    b"RIFF" + b"\0" * 4 + b"WAVE" + b"\0" * (516 * 1024)
                ).decode(),
            },
            413,
            "512 KiB",
        ),
    ]
    for body, status, word in cases:
        got, _, answer = dashboard.request("/api/devices/pi/enroll", method="POST", body=body)
        assert got == status, (body.keys(), answer)
        assert word in answer["error"]
    got, _, answer = dashboard.request(
        "/api/devices/pi/forget",
        method="POST",
        body=b"label=alice",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert got == 415  # a cross-site form cannot post JSON
    # a body over the cap is refused from its Content-Length, before it is read
    host, port = dashboard.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/api/devices/pi/enroll")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(3 * 1024 * 1024))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()


def test_a_command_to_an_absent_device_times_out_clearly(make_dashboard: Any) -> None:
    dash = make_dashboard(command_timeout_s=0.5)
    status, _, body = dash.request("/api/devices/ghost/list", method="POST", body={})
    assert status == 504 and body["error_code"] == "timeout" and "ghost" in body["error"]


def test_the_live_stream_carries_what_arrives(dashboard: Dashboard) -> None:
    host, port = dashboard.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/api/stream")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/event-stream")
    messages: list[tuple[str, Any]] = []

    def read() -> None:
        kind = None
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                messages.append((kind, json.loads(line[len("data: ") :])))
            if any(k == "event" for k, _ in messages):
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert wait_until(lambda: any(k == "hello" for k, _ in messages), 10)
    pub = publisher(dashboard.broker)
    pub.publish("edgesiam/live1/event", json.dumps(event_payload("live1", 1)))
    reader.join(15)
    conn.close()
    pub.stop()
    (event,) = [data for kind, data in messages if kind == "event"]
    assert event["device"] == "live1" and event["seq"] == 1 and "received_ts" in event


def test_an_unreachable_broker_is_shown_with_its_reason(tmp_path: Path) -> None:
    """``/api/stats`` (what the page's broker pill shows) says why, not ``last_error: null``."""
    port = free_port()  # nothing listens there
    history = History(tmp_path / "history.sqlite3")
    feed = LiveFeed()
    updates: list[tuple[str, dict[str, Any]]] = []

    def on_update(kind: str, data: dict[str, Any]) -> None:
        updates.append((kind, data))
        feed.publish(kind, data)

    ingester = Ingester(f"mqtt://localhost:{port}", history, on_update=on_update)
    server = DashboardServer(
        DashboardApp(history, ingester, TokenAuth(None), feed=feed), "127.0.0.1", 0
    )
    ingester.start()
    server.start()
    try:
        assert wait_until(lambda: ingester.last_error is not None, timeout=30)
        with urllib.request.urlopen(f"{server.url}/api/stats", timeout=30) as response:
            broker = json.loads(response.read())["broker"]
        assert broker["connected"] is False
        assert f"connection refused by localhost:{port}" in broker["last_error"]
        assert ("broker", {"connected": False, "last_error": broker["last_error"]}) in updates
    finally:
        server.stop()
        ingester.stop()
        history.close()


def test_threshold_requests_are_checked_then_sent_to_the_device(dashboard: Dashboard) -> None:
    cases: list[tuple[Any, str]] = [
        ({"label": "alice", "value": 1.5}, "[-1, 1]"),
        ({"label": "alice", "value": "high"}, "[-1, 1]"),
        ({"label": "alice", "value": True}, "[-1, 1]"),
        ({}, "value"),
        ({"label": "a/b", "value": 0.8}, "label"),
        ({"label": "alice", "value": 0.8, "target": 1}, "unknown"),
    ]
    for body, word in cases:
        got, _, answer = dashboard.request("/api/devices/pi/threshold", method="POST", body=body)
        assert got == 400 and word in answer["error"], (body, answer)
    # a valid request goes out as the device's threshold command (nobody answers here)
    device = publisher(dashboard.broker)
    device.client.subscribe("edgesiam/pi/cmd/#", qos=1)
    wait_until(lambda: False, 0.2)
    got, _, answer = dashboard.request(
        "/api/devices/pi/threshold", method="POST", body={"label": "alice", "value": 0.8125}
    )
    sent = device.wait_for("edgesiam/pi/cmd/threshold", timeout=5)
    assert sent and {k: v for k, v in sent[0].json().items() if k != "correlation_id"} == {
        "label": "alice",
        "value": 0.8125,
    }
    device.stop()


def test_review_requests_are_checked_and_undo_needs_a_known_review(make_dashboard: Any) -> None:
    dashboard = make_dashboard(command_timeout_s=1.0)
    good = {"action": "wrong", "label": "alice", "embedding": "AAAAAAAA", "embedding_scale": 0.01}
    cases: list[tuple[Any, str]] = [
        ({**good, "action": "delete"}, "action"),
        ({**good, "embedding": 5}, "embedding"),
        ({**good, "embedding_scale": 0}, "embedding_scale"),
        ({**good, "label": "a/b"}, "label"),
        ({**good, "by": "x" * 65}, "by"),
        ({**good, "audio": "…"}, "unknown"),
    ]
    for body, word in cases:
        got, _, answer = dashboard.request("/api/devices/pi/review", method="POST", body=body)
        assert got == 400 and word in answer["error"], (body, answer)
    got, _, answer = dashboard.request("/api/reviews/7/undo", method="POST", body={"by": "sam"})
    assert got == 404 and "no review 7" in answer["error"]
    # a valid review goes out as the device's reject command (nobody answers here)
    device = publisher(dashboard.broker)
    device.client.subscribe("edgesiam/pi/cmd/#", qos=1)
    wait_until(lambda: False, 0.2)
    dashboard.request("/api/devices/pi/review", method="POST", body={**good, "by": "sam"})
    sent = device.wait_for("edgesiam/pi/cmd/reject", timeout=5)
    assert sent and {k: v for k, v in sent[0].json().items() if k != "correlation_id"} == {
        "label": "alice",
        "embedding": "AAAAAAAA",
        "embedding_scale": 0.01,
    }
    device.stop()
    assert dashboard.history.reviews() == []  # nothing recorded without the device's answer
    status, _, listed = dashboard.request("/api/reviews")
    assert status == 200 and listed == {"reviews": []}

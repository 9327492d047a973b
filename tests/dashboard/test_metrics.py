"""``GET /metrics``: the fleet in Prometheus' text format, read back with prometheus_client's own
parser, on both history backends."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.dashboard import Dashboard, event_payload, publisher
from tests.support.mqtt import wait_until


@pytest.fixture(params=["sqlite", "postgresql"])
def history_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_expose_each_device_and_the_ingester(dashboard: Dashboard) -> None:
    pub = publisher(dashboard.broker)
    pub.publish("edgesiam/pi/status", "online", retain=True)
    for seq in (1, 2, 3, 3):
        pub.publish("edgesiam/pi/event", json.dumps(event_payload("pi", seq)))
    pub.publish("edgesiam/pi/near_miss", json.dumps({"ts": 1.0, "label": "bob", "score": 0.6}))
    device_metrics = {
        "events": 41, "near_misses": 7, "outbox_depth": 2, "outbox_dropped": 1,
        "inference_ms_p50": 0.5, "inference_ms_p95": 1.25,
    }  # fmt: skip
    pub.publish("edgesiam/pi/metrics", json.dumps(device_metrics))
    pub.publish("edgesiam/cam/event", json.dumps(event_payload("cam", 1)))
    h = dashboard.history
    assert wait_until(
        lambda: (
            h.counts()["events"] == 4
            and h.counts()["near_misses"] == 1
            and (h.device("pi") or {}).get("metrics") is not None
        ),
        15,
    )
    status, headers, text = dashboard.request("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    got = _samples(text)
    pi, cam = (("device", "pi"),), (("device", "cam"),)
    assert got[("edgesiam_device_events_stored", pi)] == 3
    assert got[("edgesiam_device_events_stored", cam)] == 1
    assert got[("edgesiam_device_near_misses_stored", pi)] == 1
    assert got[("edgesiam_device_online", pi)] == 1 and got[("edgesiam_device_online", cam)] == 0
    assert got[("edgesiam_device_last_seen_timestamp_seconds", pi)] == h.device("pi")["last_seen"]  # type: ignore[index]
    assert got[("edgesiam_device_events_total", pi)] == 41
    assert got[("edgesiam_device_near_misses_total", pi)] == 7
    assert got[("edgesiam_device_outbox_depth", pi)] == 2
    assert got[("edgesiam_device_outbox_dropped_total", pi)] == 1
    p95 = ("edgesiam_device_inference_latency_seconds", (("device", "pi"), ("quantile", "0.95")))
    assert got[p95] == pytest.approx(0.00125)
    assert ("edgesiam_device_outbox_depth", cam) not in got  # no metrics message from cam
    assert got[("edgesiam_ingest_events_new_total", ())] == 4
    assert got[("edgesiam_ingest_duplicates_total", ())] == 1
    pub.stop()


def test_metrics_need_the_token_when_there_is_one(make_dashboard: object) -> None:
    dash: Dashboard = make_dashboard(token="scrape-token-0123456789")  # type: ignore[operator]
    assert dash.request("/metrics", auth=False)[0] == 401
    assert dash.request("/metrics")[0] == 200

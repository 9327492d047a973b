"""``GET /metrics``: the fleet in Prometheus' text exposition format (``prometheus_client``).

Per device (label ``device``), from the history: events and near misses stored, last seen, online;
from the device's latest ``edgesiam.metrics.v1`` message: its own event and near-miss counters,
outbox depth and events dropped, inference latency (p50 and p95, label ``quantile``). Per
dashboard process: what its ingester took (messages, new events, duplicates, invalid, replay
requests). Scraped with the dashboard's token when it has one (docs/SCALING.md has a
``prometheus.yml``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from edgesiam.errors import MissingExtraError

if TYPE_CHECKING:
    from edgesiam.dashboard.history import SqlHistory
    from edgesiam.dashboard.ingest import Ingester

__all__ = ["CONTENT_TYPE", "render_metrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_FROM_DEVICE: Final = (
    # (metrics key, name, help, counter?)
    ("events", "edgesiam_device_events", "events the device decided (its own count)", True),
    ("near_misses", "edgesiam_device_near_misses", "near misses the device saw", True),
    ("outbox_depth", "edgesiam_device_outbox_depth", "events waiting for the broker", False),
    ("outbox_dropped", "edgesiam_device_outbox_dropped", "events the outbox dropped", True),
)


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


class _FleetCollector:
    """A ``prometheus_client`` collector read from the history at each scrape."""

    def __init__(self, history: SqlHistory, ingester: Ingester | None) -> None:
        self.history = history
        self.ingester = ingester

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        devices = self.history.devices()
        near = self.history.near_miss_counts()
        stored = GaugeMetricFamily(
            "edgesiam_device_events_stored", "events in the history", labels=["device"]
        )
        nm_stored = GaugeMetricFamily(
            "edgesiam_device_near_misses_stored", "near misses in the history", labels=["device"]
        )
        seen = GaugeMetricFamily(
            "edgesiam_device_last_seen_timestamp_seconds",
            "when the device was last heard from (Unix time)",
            labels=["device"],
        )
        online = GaugeMetricFamily(
            "edgesiam_device_online", "1 if its status is online", labels=["device"]
        )
        latency = GaugeMetricFamily(
            "edgesiam_device_inference_latency_seconds",
            "the device's inference time per window",
            labels=["device", "quantile"],
        )
        own = {
            key: (CounterMetricFamily if counter else GaugeMetricFamily)(
                name, text, labels=["device"]
            )
            for key, name, text, counter in _FROM_DEVICE
        }
        for d in devices:
            name = d["device"]
            stored.add_metric([name], d["events"])
            nm_stored.add_metric([name], near.get(name, 0))
            seen.add_metric([name], d["last_seen"])
            online.add_metric([name], 1.0 if d["status"] == "online" else 0.0)
            metrics = d["metrics"] or {}
            for key, family in own.items():
                if (value := _number(metrics.get(key))) is not None:
                    family.add_metric([name], value)
            for quantile, key in (("0.5", "inference_ms_p50"), ("0.95", "inference_ms_p95")):
                if (ms := _number(metrics.get(key))) is not None:
                    latency.add_metric([name, quantile], ms / 1000.0)
        yield from (stored, nm_stored, seen, online, latency, *own.values())
        yield from self._ingest()

    def _ingest(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        if self.ingester is None or not self.ingester.store:
            return
        counters = self.ingester.counters
        for count in dataclasses.fields(counters):
            if "help" in count.metadata:
                value = getattr(counters, count.name)
                yield CounterMetricFamily(
                    f"edgesiam_ingest_{count.name}", count.metadata["help"], value=value
                )
        gaps = self.ingester.gaps
        yield CounterMetricFamily(
            "edgesiam_ingest_replay_requests",
            "replays it asked devices for",
            value=gaps.requested if gaps else 0,
        )


def render_metrics(history: SqlHistory, ingester: Ingester | None) -> bytes:
    """One scrape: the text exposition of the fleet and of this process's ingester."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError as exc:
        raise MissingExtraError("prometheus_client", "dashboard") from exc
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FleetCollector(history, ingester))
    return bytes(generate_latest(registry))

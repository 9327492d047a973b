"""Home Assistant MQTT discovery for one device.

Each entity is announced by a retained JSON config on
``<discovery_prefix>/<component>/<device>/edgesiam_<object>/config`` (the device id is a whole
topic level so that a Mosquitto ACL ``pattern write homeassistant/+/%u/+/config`` can confine each
device to its own configs):

- ``event/…/edgesiam_match``: an ``event`` entity fed by ``<prefix>/<device>/event``; its
  ``event_types`` are the gallery's labels (HA ignores an event whose ``event_type`` is not
  listed, so the configs are sent again whenever the labels change). Every other field of the
  event payload becomes an attribute of the fired event (score, threshold, seq, …).
- ``sensor/…/edgesiam_<metric>``: one sensor per field of the metrics message, with
  ``value_template``, ``unit_of_measurement``, ``state_class`` and, where HA has one,
  ``device_class``.
- ``binary_sensor/…/edgesiam_connectivity``: ``device_class: connectivity`` read from the
  retained status topic (``online``/``offline``); it has no availability of its own, so it shows
  *off* rather than *unavailable* when the device is gone.

Every entity but the connectivity sensor is unavailable while the status topic says ``offline``.
All share one ``device`` block (identifiers, name, model = the bundle, sw_version) and carry
``origin`` (who sent the discovery). Full key names are used, not HA's abbreviations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from edgesiam import __version__
from edgesiam.mqtt.contract import STATUS_OFFLINE, STATUS_ONLINE, Topics

__all__ = [
    "METRIC_SENSORS",
    "MetricSensor",
    "device_block",
    "discovery_messages",
    "node_id",
    "removal_topics",
]


@dataclass(frozen=True)
class MetricSensor:
    """How one field of the metrics message appears in Home Assistant."""

    key: str
    name: str
    unit: str | None = None
    state_class: str = "measurement"
    device_class: str | None = None
    icon: str | None = None
    diagnostic: bool = True


METRIC_SENSORS: Final[tuple[MetricSensor, ...]] = (
    MetricSensor("windows_per_s", "Windows per second", "windows/s", icon="mdi:waveform"),
    MetricSensor("inference_ms_p50", "Inference p50", "ms", device_class="duration"),
    MetricSensor("inference_ms_p95", "Inference p95", "ms", device_class="duration"),
    MetricSensor(
        "events", "Events", "events", "total_increasing", icon="mdi:bell", diagnostic=False
    ),
    MetricSensor("dropped_frames", "Dropped samples", "samples", "total_increasing"),
    MetricSensor("outbox_depth", "Outbox depth", "events", icon="mdi:tray-full"),
    MetricSensor("outbox_dropped", "Outbox dropped", "events", "total_increasing"),
    MetricSensor("rss_mb", "Memory (RSS)", "MiB", device_class="data_size"),
    MetricSensor("cpu_percent", "CPU", "%", icon="mdi:cpu-64-bit"),
    MetricSensor("uptime_s", "Uptime", "s", device_class="duration"),
)
"""The metrics fields with sensors. The runtime may send more; only these get entities."""

ORIGIN: Final = {"name": "edgesiam", "sw_version": __version__}


def node_id(topics: Topics) -> str:
    """The discovery topic's node level: the device id (one ACL-matchable level)."""
    return topics.device


def device_block(topics: Topics, model_name: str, sw_version: str) -> dict[str, Any]:
    return {
        "identifiers": [f"edgesiam_{topics.device}"],
        "name": f"edgesiam {topics.device}",
        "manufacturer": "edgesiam",
        "model": model_name,
        "sw_version": sw_version,
    }


def _common(
    topics: Topics, object_id: str, name: str, model_name: str, sw_version: str
) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": f"edgesiam_{topics.device}_{object_id}",
        "device": device_block(topics, model_name, sw_version),
        "origin": ORIGIN,
    }


def _availability(topics: Topics) -> dict[str, Any]:
    return {
        "availability_topic": topics.status,
        "payload_available": STATUS_ONLINE,
        "payload_not_available": STATUS_OFFLINE,
    }


def _config_topic(prefix: str, component: str, topics: Topics, object_id: str) -> str:
    return f"{prefix}/{component}/{node_id(topics)}/edgesiam_{object_id}/config"


def discovery_messages(
    *,
    topics: Topics,
    model_name: str,
    labels: Sequence[str],
    sw_version: str = __version__,
    discovery_prefix: str = "homeassistant",
    sensors: Sequence[MetricSensor] = METRIC_SENSORS,
) -> list[tuple[str, dict[str, Any]]]:
    """``(config topic, payload)`` for every entity of the device (publish retained, QoS 1)."""
    out: list[tuple[str, dict[str, Any]]] = []
    event = _common(topics, "match", "Match", model_name, sw_version)
    event.update(
        state_topic=topics.event,
        event_types=sorted(set(labels)),
        qos=1,
        icon="mdi:account-voice",
        **_availability(topics),
    )
    out.append((_config_topic(discovery_prefix, "event", topics, "match"), event))
    for sensor in sensors:
        config = _common(topics, sensor.key, sensor.name, model_name, sw_version)
        config.update(
            state_topic=topics.metrics,
            value_template=f"{{{{ value_json.{sensor.key} }}}}",
            state_class=sensor.state_class,
            **_availability(topics),
        )
        if sensor.unit is not None:
            config["unit_of_measurement"] = sensor.unit
        if sensor.device_class is not None:
            config["device_class"] = sensor.device_class
        if sensor.icon is not None:
            config["icon"] = sensor.icon
        if sensor.diagnostic:
            config["entity_category"] = "diagnostic"
        out.append((_config_topic(discovery_prefix, "sensor", topics, sensor.key), config))
    connectivity = _common(topics, "connectivity", "Connectivity", model_name, sw_version)
    connectivity.update(
        state_topic=topics.status,
        payload_on=STATUS_ONLINE,
        payload_off=STATUS_OFFLINE,
        device_class="connectivity",
        entity_category="diagnostic",
    )
    out.append(
        (_config_topic(discovery_prefix, "binary_sensor", topics, "connectivity"), connectivity)
    )
    return out


def removal_topics(
    *,
    topics: Topics,
    discovery_prefix: str = "homeassistant",
    sensors: Sequence[MetricSensor] = METRIC_SENSORS,
) -> list[str]:
    """The config topics to clear (publish an empty retained payload) to remove the device."""
    return [
        topic
        for topic, _ in discovery_messages(
            topics=topics,
            model_name="",
            labels=(),
            discovery_prefix=discovery_prefix,
            sensors=sensors,
        )
    ]

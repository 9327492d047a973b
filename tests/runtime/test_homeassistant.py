"""Home Assistant discovery payloads carry what HA's MQTT event, sensor and binary_sensor need.

The key sets are those HA documents for each platform (home-assistant.io/integrations/
event.mqtt, sensor.mqtt, binary_sensor.mqtt): a misspelt key would be silently ignored by HA.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgesiam.runtime.homeassistant import METRIC_SENSORS, discovery_messages, removal_topics
from edgesiam.runtime.mqtt import MqttSettings, Topics, metrics_payload

COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic", "device",
    "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon",
    "json_attributes_template", "json_attributes_topic", "name", "default_entity_id", "origin",
    "payload_available", "payload_not_available", "platform", "qos", "unique_id", "value_template",
}  # fmt: skip
DOCUMENTED = {
    "event": COMMON | {"device_class", "event_types", "state_topic"},
    "sensor": COMMON | {
        "device_class", "expire_after", "force_update", "last_reset_value_template", "options",
        "suggested_display_precision", "state_class", "state_topic", "unit_of_measurement",
    },
    "binary_sensor": COMMON | {
        "device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on",
        "state_topic",
    },
}  # fmt: skip
REQUIRED = {
    "event": {"state_topic", "event_types"},
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
DEVICE_CLASS_UNITS = {
    "duration": {"d", "h", "min", "s", "ms", "µs"},
    "data_size": {"B", "kB", "MB", "GB", "KiB", "MiB", "GiB"},
}

TOPICS = Topics("edgesiam", "kitchen")


@pytest.fixture
def messages() -> list[tuple[str, dict[str, Any]]]:
    return discovery_messages(
        topics=TOPICS, model_name="speaker-int8", labels=["bob", "alice", "bob"], sw_version="9.9"
    )


def test_every_config_has_the_required_and_only_documented_fields(
    messages: list[tuple[str, dict[str, Any]]],
) -> None:
    seen = set()
    for topic, config in messages:
        prefix, component, node, object_id, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", "kitchen", "config")
        assert object_id.startswith("edgesiam_")
        seen.add(component)
        assert REQUIRED[component] <= config.keys(), topic
        assert config.keys() <= DOCUMENTED[component], config.keys() - DOCUMENTED[component]
        assert config["unique_id"].startswith("edgesiam_kitchen_")
        assert config["device"]["identifiers"] == ["edgesiam_kitchen"]
        assert config["device"]["model"] == "speaker-int8"
        assert config["device"]["sw_version"] == "9.9"
        assert config["origin"]["name"] == "edgesiam"
        json.dumps(config)
    assert seen == {"event", "sensor", "binary_sensor"}
    unique = [c["unique_id"] for _, c in messages]
    assert len(unique) == len(set(unique))


def test_event_entity(messages: list[tuple[str, dict[str, Any]]]) -> None:
    (event,) = [c for t, c in messages if t.startswith("homeassistant/event/")]
    assert event["state_topic"] == "edgesiam/kitchen/event"
    assert event["event_types"] == ["alice", "bob"]
    assert event["availability_topic"] == "edgesiam/kitchen/status"
    assert (event["payload_available"], event["payload_not_available"]) == ("online", "offline")


def test_sensors_read_the_metrics_message(messages: list[tuple[str, dict[str, Any]]]) -> None:
    sensors = [c for t, c in messages if t.startswith("homeassistant/sensor/")]
    assert len(sensors) == len(METRIC_SENSORS)
    for s in sensors:
        assert s["state_topic"] == "edgesiam/kitchen/metrics"
        assert s["value_template"].startswith("{{ value_json.") and s["value_template"].endswith(
            " }}"
        )
        assert s["state_class"] in STATE_CLASSES
        assert s["availability_topic"] == "edgesiam/kitchen/status"
        if "device_class" in s:
            assert s["unit_of_measurement"] in DEVICE_CLASS_UNITS[s["device_class"]]


def test_value_templates_render_against_a_real_metrics_message() -> None:
    """The runtime's own snapshot plus what the publisher adds holds every sensor's key."""
    jinja2 = pytest.importorskip("jinja2")
    from edgesiam.runtime.metrics import RuntimeMetrics

    payload = metrics_payload("kitchen", RuntimeMetrics().snapshot(), outbox=None)
    payload |= {"outbox_depth": 0, "outbox_dropped": 0}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    for _, config in discovery_messages(topics=TOPICS, model_name="m", labels=[]):
        if "value_template" in config:
            env.from_string(config["value_template"]).render(value_json=payload)


def test_connectivity_follows_the_status_topic_without_availability(
    messages: list[tuple[str, dict[str, Any]]],
) -> None:
    (conn,) = [c for t, c in messages if t.startswith("homeassistant/binary_sensor/")]
    assert conn["state_topic"] == "edgesiam/kitchen/status"
    assert (conn["payload_on"], conn["payload_off"]) == ("online", "offline")
    assert conn["device_class"] == "connectivity"
    assert "availability_topic" not in conn  # shows 'off', not 'unavailable', when the device dies


def test_prefixes_and_removal() -> None:
    topics = MqttSettings(device_id="pi-3", prefix="home/es").topics
    msgs = discovery_messages(topics=topics, model_name="m", labels=[], discovery_prefix="ha")
    assert all(t.startswith("ha/") and "/pi-3/" in t for t, _ in msgs)
    assert removal_topics(topics=topics, discovery_prefix="ha") == [t for t, _ in msgs]

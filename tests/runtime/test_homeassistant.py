"""Home Assistant discovery payloads carry what HA's MQTT event, sensor and binary_sensor need.

The key sets are those HA documents for each platform (home-assistant.io/integrations/
event.mqtt, sensor.mqtt, binary_sensor.mqtt) and validates in its discovery schemas
(homeassistant/components/mqtt/event.py, sensor.py, binary_sensor.py, schemas.py): a misspelt key
would be silently dropped by HA. The abbreviation tables are HA's (abbreviations.py, the subset
for the keys these platforms take): HA expands abbreviated keys before validating, so a key that
is an abbreviation, or one given both abbreviated and in full, would change what HA reads.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from edgesiam.mqtt.client import MqttSettings
from edgesiam.mqtt.contract import Topics, event_builder, metrics_payload
from edgesiam.mqtt.homeassistant import METRIC_SENSORS, discovery_messages, removal_topics

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
    rendered = {
        config["value_template"]: env.from_string(config["value_template"]).render(
            value_json=payload
        )
        for _, config in discovery_messages(topics=TOPICS, model_name="m", labels=[])
        if "value_template" in config
    }
    assert len(rendered) >= len(METRIC_SENSORS)
    for template, text in rendered.items():
        key = template.removeprefix("{{ value_json.").removesuffix(" }}")
        assert text == str(payload[key]), template


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


# -- HA's discovery rules beyond the key lists -------------------------------------------------

ABBREVIATIONS = {
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "avty_tpl": "availability_template", "dev": "device", "dev_cla": "device_class",
    "def_ent_id": "default_entity_id", "e": "encoding", "en": "enabled_by_default",
    "ent_cat": "entity_category", "ent_pic": "entity_picture", "evt_typ": "event_types",
    "exp_aft": "expire_after", "frc_upd": "force_update", "ic": "icon",
    "json_attr_t": "json_attributes_topic", "json_attr_tpl": "json_attributes_template",
    "lrst_val_tpl": "last_reset_value_template", "o": "origin", "off_dly": "off_delay",
    "ops": "options", "pl_avail": "payload_available", "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off", "pl_on": "payload_on", "stat_cla": "state_class",
    "stat_t": "state_topic", "sug_dsp_prc": "suggested_display_precision", "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement", "val_tpl": "value_template",
}  # fmt: skip
DEVICE_ABBREVIATIONS = {
    "cns": "connections", "cu": "configuration_url", "hw": "hw_version", "ids": "identifiers",
    "mdl": "model", "mdl_id": "model_id", "mf": "manufacturer", "name": "name",
    "sa": "suggested_area", "sn": "serial_number", "sw": "sw_version",
}  # fmt: skip
DEVICE_KEYS = set(DEVICE_ABBREVIATIONS.values()) | {"via_device"}
ORIGIN_ABBREVIATIONS = {"name": "name", "sw": "sw_version", "url": "support_url"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
BINARY_SENSOR_DEVICE_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window",
}  # fmt: skip
TOPIC_MATCHER = re.compile(  # HA's discovery topic rule (discovery.py), after the prefix
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config"
)


def expand(config: dict[str, Any]) -> dict[str, Any]:
    """What HA's discovery does to a payload before validating it: abbreviations → full keys."""
    out = {ABBREVIATIONS.get(k, k): v for k, v in config.items()}
    assert len(out) == len(config), "a key is given both abbreviated and in full"
    for block, table in (("device", DEVICE_ABBREVIATIONS), ("origin", ORIGIN_ABBREVIATIONS)):
        if isinstance(out.get(block), dict):
            out[block] = {table.get(k, k): v for k, v in out[block].items()}
    return out


def test_configs_use_the_full_key_names_that_abbreviations_expand_to(
    messages: list[tuple[str, dict[str, Any]]],
) -> None:
    full_names = set(ABBREVIATIONS.values())
    for topic, config in messages:
        assert expand(config) == config, topic  # no key is an abbreviation
        assert not config.keys() & (ABBREVIATIONS.keys() - full_names), topic
        component = topic.split("/")[1]
        # every key this project sends is one HA documents for the platform (full or abbreviated)
        assert config.keys() <= DOCUMENTED[component]
        abbreviated = {
            next((a for a, f in ABBREVIATIONS.items() if f == k), k): v for k, v in config.items()
        }
        assert expand(abbreviated) == config  # and HA would read the same from the short form


def test_device_and_origin_blocks_follow_the_device_registry_schema(
    messages: list[tuple[str, dict[str, Any]]],
) -> None:
    for _, config in messages:
        device, origin = config["device"], config["origin"]
        assert device.keys() <= DEVICE_KEYS
        assert device["identifiers"] and all(isinstance(i, str) for i in device["identifiers"])
        assert all(isinstance(v, str) for k, v in device.items() if k != "identifiers")
        assert "name" in origin and origin.keys() <= set(ORIGIN_ABBREVIATIONS.values())
        assert not ("availability" in config and "availability_topic" in config)  # exclusive
        assert config.get("qos", 0) in (0, 1, 2)
        if "entity_category" in config:
            assert config["entity_category"] in ENTITY_CATEGORIES


def test_config_topics_match_what_home_assistant_subscribes_to(
    messages: list[tuple[str, dict[str, Any]]],
) -> None:
    for topic, config in messages:
        prefix, _, rest = topic.partition("/")
        match = TOPIC_MATCHER.fullmatch(rest)
        assert prefix == "homeassistant" and match is not None, topic
        assert match["component"] in DOCUMENTED
        assert match["node_id"] == "kitchen"
        assert config["unique_id"].endswith(match["object_id"].removeprefix("edgesiam"))


def test_a_runtime_event_fires_the_event_entity(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """HA's event entity reads ``event_type`` from the JSON payload, ignores the event when the
    type is not in ``event_types``, and turns the other fields into attributes."""
    (event_config,) = [c for t, c in messages if t.startswith("homeassistant/event/")]
    build = event_builder(
        device="kitchen",
        model="speaker-int8",
        label="alice",
        score=0.91,
        threshold=0.7,
        offset_s=2.0,
    )
    payload = json.loads(json.dumps(build(7, "kitchen-0a1b2c3d-7")))
    assert isinstance(payload["event_type"], str)
    assert payload["event_type"] in event_config["event_types"]
    attributes = {k: v for k, v in payload.items() if k not in ("event_type", "event_types")}
    assert {"score", "threshold", "seq", "id", "label"} <= attributes.keys()
    assert "value_template" not in event_config  # the payload is read as it is


def test_no_labels_still_gives_a_valid_event_entity() -> None:
    (event,) = [
        c
        for t, c in discovery_messages(topics=TOPICS, model_name="m", labels=[])
        if t.startswith("homeassistant/event/")
    ]
    assert event["event_types"] == []  # a list (required), empty until labels are enrolled


def test_binary_sensor_payloads_and_device_class(
    messages: list[tuple[str, dict[str, Any]]],
) -> None:
    (conn,) = [c for t, c in messages if t.startswith("homeassistant/binary_sensor/")]
    assert conn["device_class"] in BINARY_SENSOR_DEVICE_CLASSES
    assert conn["payload_on"] != conn["payload_off"]
    assert "value_template" not in conn  # the status payload is compared as it is

"""MQTT sensor payloads and serial CSV lines (``edgesiam.runtime.sources``) against bad input.

Property: :func:`parse_sensor_payload` returns float32 rows ``(n, channels)`` with ``n >= 1`` or
raises ``DataError``; :func:`parse_csv_row` returns a row, None (blank line or header) or raises
``DataError``. Inputs: random bytes, random JSON (rows of the wrong width, nested lists, objects,
booleans, strings, huge integers, NaN/Infinity), packed float32 of any length with NaN/Inf.
Through a real Mosquitto, the ``mqtt:`` source skips and counts the bad messages and keeps
delivering the good ones.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edgesiam.errors import DataError
from edgesiam.runtime.sources.base import StreamFormat
from edgesiam.runtime.sources.mqtt import MqttSensorSource
from edgesiam.runtime.sources.rows import parse_csv_row, parse_sensor_payload
from tests.support.fuzz_scale import TIMEOUT_S, fuzz_settings
from tests.support.mqtt import MosquittoBroker, wait_until

pytestmark = pytest.mark.timeout(TIMEOUT_S)

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([10**400, -(10**400), 1e308, -1e308, 3.5e38, 0, None]),
)
leaves = st.one_of(numbers, st.booleans(), st.text(max_size=4))
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=8)
        | st.dictionaries(st.sampled_from(["samples", "x", ""]), inner, max_size=3)
    ),
    max_leaves=80,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity as JavaScript writes them


def check_rows(payload: bytes, encoding: str, channels: int) -> None:
    try:
        rows = parse_sensor_payload(payload, encoding, channels)  # type: ignore[arg-type]
    except DataError as exc:
        assert str(exc)
        return
    assert rows.dtype == np.float32 and rows.ndim == 2
    assert rows.shape[0] >= 1 and rows.shape[1] == channels


@fuzz_settings(400)
@given(value=json_values, channels=st.integers(1, 6))
def test_random_json_gives_rows_or_a_data_error(value: Any, channels: int) -> None:
    check_rows(dumps(value), "json", channels)


@fuzz_settings(200)
@given(
    rows=st.lists(st.lists(numbers, min_size=1, max_size=7), min_size=1, max_size=5),
    channels=st.integers(1, 6),
    wrap=st.booleans(),
)
def test_rows_of_any_width_give_rows_or_a_data_error(
    rows: list[list[Any]], channels: int, wrap: bool
) -> None:
    check_rows(dumps({"samples": rows} if wrap else rows), "json", channels)


@fuzz_settings(300)
@given(payload=st.binary(max_size=200), encoding=st.sampled_from(["json", "f32le"]))
def test_random_bytes_give_rows_or_a_data_error(payload: bytes, encoding: str) -> None:
    check_rows(payload, encoding, 3)


@fuzz_settings(200)
@given(
    values=st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=40),
    cut=st.integers(0, 3),
    channels=st.integers(1, 6),
)
def test_packed_float32_whole_rows_only(values: list[float], cut: int, channels: int) -> None:
    payload = struct.pack(f"<{len(values)}f", *values)
    payload = payload[: len(payload) - cut] if cut else payload
    whole = len(payload) > 0 and len(payload) % (4 * channels) == 0
    if whole:
        rows = parse_sensor_payload(payload, "f32le", channels)
        assert rows.shape == (len(payload) // (4 * channels), channels)
        expected = np.frombuffer(payload, "<f4").reshape(-1, channels)
        np.testing.assert_array_equal(rows, expected)  # NaN/Inf kept for the front-end
    else:
        with pytest.raises(DataError, match="whole number of rows"):
            parse_sensor_payload(payload, "f32le", channels)


@fuzz_settings(400)
@given(line=st.text(max_size=80), channels=st.integers(1, 6), header=st.booleans())
def test_csv_lines_give_a_row_none_or_a_data_error(line: str, channels: int, header: bool) -> None:
    try:
        row = parse_csv_row(line, channels, allow_header=header)
    except DataError:
        return
    assert row is None or (row.dtype == np.float32 and row.shape == (channels,))


# --- regressions found by fuzzing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"[" + b"9" * 400 + b"]", "too large"),  # OverflowError converting to float
        (b"[" + b"9" * 5000 + b"]", "not JSON"),  # ValueError: over Python's 4300-digit limit
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # RecursionError
    ],
)
def test_payloads_that_escaped_as_other_exceptions(payload: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        parse_sensor_payload(payload, "json", 1)


def test_values_beyond_float32_become_infinite_samples() -> None:
    rows = parse_sensor_payload(b"[1e39, -1e39, 1e400]", "json", 3)
    assert rows.tolist() == [[np.inf, -np.inf, np.inf]]


def test_the_mqtt_source_skips_bad_messages_and_keeps_streaming(
    mosquitto: MosquittoBroker,
) -> None:
    """Before the fix, a huge integer made paho's network thread die: the stream went silent."""
    source = MqttSensorSource(
        StreamFormat("sensor", 50, 3), "imu/fuzz", "json", url=mosquitto.url, qos=1
    )
    got: list[np.ndarray] = []
    chunks = source.chunks()

    import threading

    def read() -> None:
        for chunk in chunks:
            got.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert wait_until(source.subscribed.is_set, 20)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2)
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        bad = [
            b"[" + b"9" * 400 + b", 1, 2]",
            b"[" + b"9" * 5000 + b"]",
            b"[" * 50_000 + b"]" * 50_000,
            b"\xff\xfe",
            b"[1, 2]",
            b'{"samples": [[1, 2, "x"]]}',
        ]
        for payload in [*bad, b"[[1, 2, 3], [NaN, Infinity, 4]]"]:
            pub.publish("imu/fuzz", payload, qos=1).wait_for_publish(10)
        assert wait_until(lambda: sum(c.shape[0] for c in got) >= 2, 20), source.rejected
        assert source.rejected == len(bad)
        rows = np.concatenate(got)
        np.testing.assert_array_equal(rows[0], [1, 2, 3])
        assert np.isnan(rows[1, 0]) and np.isinf(rows[1, 1])
        pub.loop_stop()
        pub.disconnect()
    finally:
        source.close()
        reader.join(10)

"""``POST /api/devices/<id>/enroll`` with several clips, sensor CSVs and append: checked before
anything is sent, then delivered to a real runtime (the shipped motion bundle) over Mosquitto."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgesiam.runtime.pipeline import Runtime
from tests.support.dashboard import Dashboard
from tests.support.mqtt import wait_until
from tests.support.runtime import make_config
from tests.support.signals import make_motion, wav_bytes

MOTION = Path(__file__).resolve().parents[2] / "export" / "motion"
HEADER = "acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def csv_bytes(rows: np.ndarray) -> bytes:
    buf = io.StringIO()
    np.savetxt(buf, rows, delimiter=",", fmt="%.5f", header=HEADER, comments="")
    return buf.getvalue().encode()


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"label": "a"}, 400, "one of wav_base64, csv_base64 or clips"),
        ({"label": "a", "clips": []}, 400, "1 to 10 clips"),
        ({"label": "a", "clips": [{"wav_base64": b64(wav_bytes())}] * 11}, 400, "1 to 10"),
        ({"label": "a", "clips": [{"name": "x.wav"}]}, 400, "either wav_base64 or csv_base64"),
        ({"label": "a", "clips": [{"name": "../x", "csv_base64": b64(b"1,2")}]}, 400, "file name"),
        ({"label": "a", "clips": [{"wav_base64": b64(b"1,2,3\n" * 20)}]}, 400, "not a WAV"),
        ({"label": "a", "csv_base64": b64(b"\x00\x01\x02")}, 400, "not a text CSV"),
        ({"label": "a", "csv_base64": b64(b"1,2,3\n"), "append": "yes"}, 400, "append"),
        ({"label": "a", "clips": [{"wav_base64": b64(wav_bytes(13.2))}] * 5}, 413, "2 MiB"),
    ],
)
def test_enroll_bodies_are_checked(
    dashboard: Dashboard, body: dict[str, Any], status: int, words: str
) -> None:
    got, _, answer = dashboard.request("/api/devices/pi/enroll", method="POST", body=body)
    assert got == status, answer
    assert words in answer["error"]


@pytest.fixture
def imu_device(dashboard: Dashboard, tmp_path: Path) -> Iterator[Runtime]:
    """A running runtime with the shipped motion bundle, reading IMU rows from MQTT."""
    config = make_config(
        MOTION,
        tmp_path / "gallery.npz",
        {"type": "mqtt", "topic": "sensors/wrist/imu"},
        tmp_path / "state",
        device_id="wrist",
        mqtt={"enabled": True, "url": dashboard.broker.url, "homeassistant": False},
    )
    runtime = Runtime(config)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    assert wait_until(lambda: (dashboard.history.device("wrist") or {}).get("status") == "online")
    yield runtime
    runtime.stop()
    thread.join(15)


def test_an_imu_device_enrolls_csv_clips_sent_through_the_dashboard(
    dashboard: Dashboard, imu_device: Runtime
) -> None:
    rng = np.random.default_rng(3)
    clips = [
        {"name": f"wave{i}.csv", "csv_base64": b64(csv_bytes(make_motion(2, 300, 50, rng)))}
        for i in (1, 2)
    ]
    status, _, answer = dashboard.request(
        "/api/devices/wrist/enroll", method="POST", body={"label": "wave", "clips": clips}
    )
    assert status == 200 and answer["ok"], answer
    assert answer["result"]["recordings"] == 2
    assert [c["name"] for c in answer["result"]["clips"]] == ["wave1.csv", "wave2.csv"]
    more = {"name": "wave3.csv", "csv_base64": b64(csv_bytes(make_motion(2, 300, 50, rng)))}
    status, _, answer = dashboard.request(
        "/api/devices/wrist/enroll",
        method="POST",
        body={"label": "wave", "clips": [more], "append": True},
    )
    assert status == 200 and answer["result"]["recordings"] == 3
    assert imu_device.gallery.counts() == {"wave": 3}
    assert (dashboard.history.device("wrist") or {}).get("labels") == ["wave"]

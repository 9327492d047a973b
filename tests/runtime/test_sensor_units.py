"""Sensor streams and recordings in other units, orders and rates than the bundle's: the shipped
motion bundle (g and rad/s at 50 Hz, real TFLite), a real Mosquitto, serial and stdin streams."""

from __future__ import annotations

import io
import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgesiam.errors import ConfigError, DataError
from edgesiam.model.embedders import embed_recording
from edgesiam.model.interpreters import load_model
from edgesiam.mqtt.client import MqttSettings
from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
from edgesiam.runtime.sources import open_source
from edgesiam.runtime.sources.base import StreamFormat
from edgesiam.runtime.sources.file import FileSource
from edgesiam.runtime.sources.serial import SerialSource
from edgesiam.runtime.sources.stdin import StdinSource
from tests.support.cli import run_gallery
from tests.support.mqtt import MosquittoBroker, Subscriber, wait_until
from tests.support.signals import make_motion

MOTION_BUNDLE = Path(__file__).resolve().parents[2] / "export" / "motion"
NAMES = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
IMU = StreamFormat("sensor", 50, 6, NAMES, ("g", "g", "g", "rad/s", "rad/s", "rad/s"))
SI = ["m/s^2"] * 3 + ["deg/s"] * 3
TO_SI = np.array([9.80665] * 3 + [180 / math.pi] * 3, dtype=np.float32)


def gesture(n: int = 600, kind: int = 1) -> np.ndarray:
    """A wrist still for two seconds (gravity on z, in g), then a gesture (rad/s)."""
    x = make_motion(kind, n, 50, np.random.default_rng(kind))
    x[:100] = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    return x


def collect(source: Any) -> np.ndarray:
    return np.concatenate(list(source.chunks()))


def csv_text(x: np.ndarray, names: list[str] | None) -> str:
    rows = [",".join(f"{v:.7g}" for v in row) for row in x]
    return "\n".join(([",".join(names)] if names else []) + rows) + "\n"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_shipped_motion_bundle_states_its_units() -> None:
    embedder = load_model(MOTION_BUNDLE)
    assert embedder.manifest.channel_units == ["g", "g", "g", "rad/s", "rad/s", "rad/s"]
    assert StreamFormat.of(embedder) == IMU


def test_file_in_other_units_and_order_embeds_like_the_bundles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = load_model(MOTION_BUNDLE)
    fmt = StreamFormat.of(embedder)
    x = gesture()
    reference = embed_recording(embedder, x)
    order = [3, 4, 5, 0, 1, 2]  # the gyroscope first, in deg/s; the accelerometer in m/s^2
    path = tmp_path / "wave.csv"
    path.write_text(csv_text((x * TO_SI)[:, order], [NAMES[i] for i in order]))
    source = open_source({"type": "file", "path": str(path), "units": SI}, fmt)
    assert cosine(embed_recording(embedder, collect(source)), reference) > 0.999
    # undeclared, the same file is read in the wrong units, and said so
    with caplog.at_level(logging.WARNING, logger="edgesiam.runtime"):
        raw = collect(FileSource(path, fmt))
    assert cosine(embed_recording(embedder, raw), reference) < 0.95
    [warning] = [r.getMessage() for r in caplog.records if "at rest" in r.getMessage()]
    assert "reads 9.81 g at rest" in warning and "set the source's units" in warning


def test_serial_stream_in_declared_units_is_converted() -> None:
    x = gesture(200)
    text = csv_text(x * TO_SI, None)
    source = SerialSource(IMU, "loop://", stream=io.BytesIO(text.encode()), units=SI)
    np.testing.assert_allclose(collect(source), x, rtol=1e-4, atol=1e-5)


def test_undeclared_si_stream_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    x = np.tile(gesture(), (2, 1))  # 24 s: checked once, on the first 10 s
    text = csv_text(x * TO_SI, None)
    source = SerialSource(IMU, "loop://", stream=io.BytesIO(text.encode()), chunk_s=0.5)
    with caplog.at_level(logging.WARNING, logger="edgesiam.runtime"):
        got = collect(source)
    np.testing.assert_allclose(got, x * TO_SI, rtol=1e-4)  # nothing declared: nothing converted
    warnings = [r.getMessage() for r in caplog.records if "at rest" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith("serial:loop://: the accelerometer (acc_x, acc_y, acc_z)")
    assert "the samples look like m/s^2: set the source's units" in warnings[0]


def test_stdin_rows_in_deg_per_second_by_channel_name() -> None:
    x = gesture(100)
    sent = x.copy()
    sent[:, 3:] *= 180 / math.pi
    stream = io.BytesIO(sent.astype("<f4").tobytes())
    units = {"gyro_x": "deg/s", "gyro_y": "dps", "gyro_z": "deg/s"}
    source = StdinSource(IMU, channels=6, encoding="f32le", stream=stream, units=units)
    np.testing.assert_allclose(collect(source), x, rtol=1e-5, atol=1e-6)


def test_units_that_cannot_fit_the_bundle_are_refused_at_open() -> None:
    with pytest.raises(ConfigError, match=r"serial:loop://: units: channel 1 .* in deg/s.*g"):
        SerialSource(IMU, "loop://", stream=io.BytesIO(b""), units=["deg/s"] * 6)
    with pytest.raises(ConfigError, match=r"source\.mqtt\.units.*unknown unit 'furlong'"):
        open_source("mqtt:imu?units=[furlong]", IMU)


def test_mqtt_rows_in_si_units_are_converted(
    mosquitto: MosquittoBroker, subscriber: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = MqttSettings(url=mosquitto.url, device_id="pi", homeassistant=False)
    uri = "mqtt:sensors/wrist/imu?units=[m/s2, m/s2, m/s2, dps, dps, dps]"
    source = open_source(uri, IMU, mqtt=settings)
    got: list[np.ndarray] = []
    reader = threading.Thread(target=lambda: got.extend(source.chunks()), daemon=True)
    reader.start()
    assert source.subscribed.wait(10)  # type: ignore[attr-defined]
    publisher: Subscriber = subscriber("unused/#")
    x = gesture(600)
    with caplog.at_level(logging.WARNING, logger="edgesiam.runtime"):
        for start in range(0, len(x), 50):
            publisher.publish(
                "sensors/wrist/imu", json.dumps((x[start : start + 50] * TO_SI).tolist()), qos=1
            )
        assert wait_until(lambda: sum(len(c) for c in got) >= len(x), timeout=10)
    source.close()
    reader.join(5)
    np.testing.assert_allclose(np.concatenate(got), x, rtol=1e-4, atol=1e-5)
    assert not [r for r in caplog.records if "at rest" in r.getMessage()]


def test_enroll_reads_header_units_and_rate_as_the_dataset_declares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    x = gesture(600)
    np.save(tmp_path / "reference.npy", x)
    # the same gesture recorded at 100 Hz in m/s^2 and deg/s, the gyroscope first
    t50, t100 = np.arange(600) / 50, np.arange(1200) / 100
    fast = np.stack([np.interp(t100, t50, x[:, c]) for c in range(6)], axis=1) * TO_SI
    order = [3, 4, 5, 0, 1, 2]
    folder = tmp_path / "ds" / "wave"
    folder.mkdir(parents=True)
    (folder / "1.csv").write_text(csv_text(fast[:, order], [NAMES[i] for i in order]))
    units = ", ".join(f'"{u}"' for u in SI)
    (tmp_path / "ds" / "dataset.toml").write_text(f"sample_rate = 100\nunits = [{units}]\n")
    gallery = tmp_path / "gallery.npz"
    common = ["--bundle", MOTION_BUNDLE, "--gallery", gallery]
    code, _, err = run_gallery(
        capsys, "enroll", *common, "--label", "ref", tmp_path / "reference.npy"
    )
    assert code == 0, err
    code, _, err = run_gallery(capsys, "enroll", *common, "--label", "wave", folder / "1.csv")
    assert code == 0, err
    assert not [r for r in caplog.records if "1.csv" in r.getMessage()]  # no notice, no warning
    loaded = GalleryStore(gallery).load(model_sha256(load_model(MOTION_BUNDLE).manifest))
    assert cosine(loaded.templates("ref")[0], loaded.templates("wave")[0]) > 0.99
    # a loose file without a header is taken in the bundle's order, and said so once
    loose = tmp_path / "loose.csv"
    loose.write_text(csv_text(x, None))
    with caplog.at_level(logging.WARNING, logger="edgesiam.data.readers"):
        code, _, err = run_gallery(capsys, "enroll", *common, "--label", "loose", loose)
    assert code == 0, err
    [notice] = [r.getMessage() for r in caplog.records if r.getMessage().startswith(str(loose))]
    assert notice.endswith(
        "has no header: columns taken in the model's order (acc_x, acc_y, "
        "acc_z, gyro_x, gyro_y, gyro_z)"
    )


def test_embed_reads_the_dataset_for_the_bundle_and_skips_an_empty_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edgesiam.cli import main

    embedder = load_model(MOTION_BUNDLE)
    root = tmp_path / "ds"
    t50, t100 = np.arange(600) / 50, np.arange(1200) / 100
    order = [3, 4, 5, 0, 1, 2]
    expected = []
    for kind in (1, 2):
        x = gesture(600, kind)
        expected.append(embed_recording(embedder, x))
        fast = np.stack([np.interp(t100, t50, x[:, c]) for c in range(6)], axis=1) * TO_SI
        (root / f"move{kind}").mkdir(parents=True)
        (root / f"move{kind}" / "a.csv").write_text(
            csv_text(fast[:, order], [NAMES[i] for i in order])
        )
    (root / "move2" / "b.csv").write_text(
        "acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n1,2,3,4,5,6\n,1,2,3,4,5\n"
    )
    units = ", ".join(f'"{u}"' for u in SI)
    (root / "dataset.toml").write_text(f"sample_rate = 100\nunits = [{units}]\n")
    out = tmp_path / "emb.npz"
    args = ["embed", str(MOTION_BUNDLE), str(root), "-o", str(out), "-q"]
    assert main(args) == 2  # an empty field is an error naming the file and line
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--on-error", "skip"]) == 0
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skipped) == 1 and "b.csv: line 3: column 1 is empty" in skipped[0]
    data = np.load(out)
    assert list(data["labels"]) == ["move1", "move2"]
    for got, want in zip(data["embeddings"], expected, strict=True):
        assert cosine(got, want) > 0.94  # resampled twice: 100 Hz made by linear interpolation


def test_serial_header_sets_the_column_order(caplog: pytest.LogCaptureFixture) -> None:
    x = gesture(100)
    order = [3, 4, 5, 0, 1, 2]
    text = csv_text(x[:, order], [NAMES[i] for i in order])
    source = SerialSource(IMU, "loop://", stream=io.BytesIO(text.encode()))
    np.testing.assert_allclose(collect(source), x, atol=1e-5)
    partial = csv_text(x, ["acc_x", "acc_y", "acc_z", "gx", "gy", "gz"])
    source = SerialSource(IMU, "loop://", stream=io.BytesIO(partial.encode()))
    with pytest.raises(DataError, match=r"serial:loop://: .*lack the channel\(s\) gyro_x, gyro_y"):
        collect(source)
    unknown = csv_text(x, ["a", "b", "c", "d", "e", "f"])
    with caplog.at_level(logging.WARNING, logger="edgesiam.runtime"):
        got = collect(SerialSource(IMU, "loop://", stream=io.BytesIO(unknown.encode())))
    np.testing.assert_allclose(got, x, atol=1e-5)
    [notice] = [r.getMessage() for r in caplog.records if "bundle's order" in r.getMessage()]
    assert "names none of the bundle's channels" in notice


def test_file_source_honours_the_files_dataset_toml(tmp_path: Path) -> None:
    x = gesture(300)
    t50, t100 = np.arange(300) / 50, np.arange(600) / 100
    fast = np.stack([np.interp(t100, t50, x[:, c]) for c in range(6)], axis=1) * TO_SI
    (tmp_path / "ds" / "wave").mkdir(parents=True)
    np.save(tmp_path / "ds" / "wave" / "1.npy", fast[:, [3, 4, 5, 0, 1, 2]])
    names = ", ".join(f'"{NAMES[i]}"' for i in [3, 4, 5, 0, 1, 2])
    units = ", ".join(f'"{SI[i]}"' for i in [3, 4, 5, 0, 1, 2])
    (tmp_path / "ds" / "dataset.toml").write_text(
        f"sample_rate = 100\nchannels = [{names}]\nunits = [{units}]\n"
    )
    got = collect(FileSource(tmp_path / "ds" / "wave" / "1.npy", IMU))
    assert got.shape == (300, 6)
    assert float(np.abs(got - x)[20:-20].mean()) < 0.02  # back at 50 Hz, in g and rad/s, in order

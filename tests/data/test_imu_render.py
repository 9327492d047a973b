"""`edgesiam data render-imu`: recordings turned by a mounting rotation and written in other units,
which the readers and the trainer bring back to the model's units and channel order."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from edgesiam.cli import main
from edgesiam.core.units import STANDARD_GRAVITY
from edgesiam.data.imu_render import ImuRendering, render_imu
from edgesiam.data.readers import SensorSpec, iter_recordings, scan_dataset
from edgesiam.data.recipes.hapt import CHANNELS, UNITS
from edgesiam.data.recipes.imusim import render
from edgesiam.errors import DataError
from edgesiam.train.windows import load_windows, pool_datasets


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("imu") / "test"
    render(folder, classes=3, performers=2, seed=0, progress=False)
    return folder


def _pairs(a: Path, b: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.load(p), np.load(b / p.relative_to(a))) for p in sorted(a.rglob("*.npy"))]


def _angle_deg(x: np.ndarray, y: np.ndarray) -> float:
    """The angle of the rotation taking rows of ``x`` to rows of ``y`` (least squares)."""
    u, _, vt = np.linalg.svd(x.T.astype(np.float64) @ y)
    r = (u @ vt).T
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


def test_a_rotation_turns_both_sensors_of_a_recording_alike_by_that_angle(
    source: Path, tmp_path: Path
) -> None:
    assert (
        main(
            ["data", "render-imu", str(source), "--rotation", "90", "-o", str(tmp_path / "r"), "-q"]
        )
        == 0
    )
    pairs = _pairs(source, tmp_path / "r")
    assert len(pairs) == 6
    turns = []
    for x, y in pairs:
        assert _angle_deg(x[:, :3], y[:, :3]) == pytest.approx(90.0, abs=0.01)
        assert _angle_deg(x[:, 3:], y[:, 3:]) == pytest.approx(90.0, abs=0.01)
        np.testing.assert_allclose(
            np.linalg.norm(y[:, :3], axis=1), np.linalg.norm(x[:, :3], axis=1), rtol=1e-5
        )
        turns.append(np.linalg.lstsq(x[:, :3], y[:, :3], rcond=None)[0])
    assert not np.allclose(turns[0], turns[1], atol=1e-3)  # one rotation per recording
    stamp = json.loads((tmp_path / "r" / "RENDER.json").read_text())
    assert stamp["rotation_deg"] == 90.0 and stamp["recordings"] == 6


def test_uniform_rotations_and_the_same_seed_give_the_same_rendering(
    source: Path, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        render_imu(
            [source], tmp_path / name, ImuRendering(rotation_deg=180.0, seed=3), progress=False
        )
    for a, b in zip(_pairs(source, tmp_path / "a"), _pairs(source, tmp_path / "b"), strict=True):
        np.testing.assert_array_equal(a[1], b[1])
    assert render_imu([source], tmp_path / "a", ImuRendering(180.0, seed=3), progress=False) == 0


def test_other_units_are_declared_and_read_back_in_the_model_units(
    source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "si"
    render_imu([source], out, ImuRendering(acc_unit="m/s^2", gyro_unit="deg/s"), progress=False)
    toml = tomllib.loads((out / "dataset.toml").read_text())
    assert toml["units"] == {
        **dict.fromkeys(CHANNELS[:3], "m/s^2"),
        **dict.fromkeys(CHANNELS[3:], "deg/s"),
    }
    for x, y in _pairs(source, out):
        np.testing.assert_allclose(y[:, :3], x[:, :3] * STANDARD_GRAVITY, rtol=1e-6)
        np.testing.assert_allclose(y[:, 3:], np.degrees(x[:, 3:]), rtol=1e-6)
    spec = SensorSpec(50, 6, CHANNELS, UNITS)  # what the motion bundle takes
    back = dict(iter_recordings(scan_dataset(out), progress=False, spec=spec))
    for rec, y in back.items():
        np.testing.assert_allclose(
            y, np.load(source / rec.label / rec.path.name), rtol=1e-5, atol=1e-6
        )


def test_folders_are_merged_and_a_clash_of_stems_is_an_error(source: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    render(other, classes=2, performers=1, seed=9, progress=False)
    for p in other.rglob("*.npy"):
        p.rename(p.with_name("x" + p.name))
    assert render_imu([source, other], tmp_path / "all", ImuRendering(), progress=False) == 8
    assert len(scan_dataset(tmp_path / "all")) == 8
    with pytest.raises(DataError, match="two sources hold"):
        render_imu([source, source], tmp_path / "twice", ImuRendering(), progress=False)


def test_a_rotation_needs_to_know_the_sensor_axes(tmp_path: Path) -> None:
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "dataset.toml").write_text(
        'modality = "sensor"\nsample_rate = 50\nchannels = ["p", "q", "r"]\n'
    )
    np.save(tmp_path / "d" / "a" / "x.npy", np.zeros((10, 3), np.float32))
    with pytest.raises(DataError, match="needs 3 acceleration channels"):
        render_imu(
            [tmp_path / "d"], tmp_path / "o", ImuRendering(rotation_deg=30.0), progress=False
        )


def test_training_pools_folders_with_other_channel_orders_and_units(
    source: Path, tmp_path: Path
) -> None:
    si = tmp_path / "si"
    render_imu([source], si, ImuRendering(acc_unit="m/s^2", gyro_unit="deg/s"), progress=False)
    mixed = tmp_path / "mixed"  # the same recordings, columns in another order, relabelled
    order = [4, 0, 5, 2, 1, 3]
    for p in si.rglob("*.npy"):
        target = mixed / ("x" + p.parent.name) / p.name
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, np.load(p)[:, order])
    names = [CHANNELS[i] for i in order]
    units = ["m/s^2" if n.startswith("acc") else "deg/s" for n in names]
    (mixed / "dataset.toml").write_text(
        f'modality = "sensor"\nsample_rate = 50\nchannels = {json.dumps(names)}\nunits = {json.dumps(units)}\n'
    )
    pooled = pool_datasets([scan_dataset(source), scan_dataset(mixed)])
    windows = load_windows(pooled, 50, 128, 64, 100, 1, np.random.default_rng(0), progress=False)
    by_label = {
        name: windows.windows[windows.labels == i] for i, name in enumerate(windows.label_names)
    }
    assert len(by_label) == 6
    for label in ("m0", "m1", "m2"):
        np.testing.assert_allclose(by_label["x" + label], by_label[label], rtol=1e-5, atol=1e-5)


def test_pooling_folders_whose_channels_cannot_be_matched_is_an_error(
    source: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "bare"
    (bare / "a").mkdir(parents=True)
    (bare / "dataset.toml").write_text('modality = "sensor"\nsample_rate = 25\n')
    np.save(bare / "a" / "x.npy", np.zeros((10, 6), np.float32))
    with pytest.raises(DataError, match="name the channels"):
        pool_datasets([scan_dataset(source), scan_dataset(bare)])


def test_a_pooled_folder_s_notices_name_its_own_dataset_toml(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "other"
    render(other, classes=2, performers=1, seed=1, progress=False)
    for p in other.rglob("*.npy"):
        np.save(p, np.load(p) * np.float32(STANDARD_GRAVITY))  # m/s² declared as g
    pooled = pool_datasets([scan_dataset(source), scan_dataset(other)])
    with caplog.at_level("WARNING"):
        load_windows(pooled, 50, 128, 64, 100, 1, np.random.default_rng(0), progress=False)
    assert f"units in {other / 'dataset.toml'}" in caplog.text

"""The units a bundle states for its channels: in the manifest (checked, optional for older
bundles), and where the export takes them from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgesiam.errors import BundleError
from edgesiam.export.bundle_writer import _channel_units
from edgesiam.model.bundle import load_manifest
from tests.support.signals import write_sensor_dataset


def test_manifest_without_channel_units_still_loads(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "export" / "motion"
    assert load_manifest(shipped).channel_units == ["g", "g", "g", "rad/s", "rad/s", "rad/s"]
    old = tmp_path / "motion"
    shutil.copytree(shipped, old)
    data = json.loads((old / "manifest.json").read_text())
    del data["channel_units"]  # a bundle exported before units were stated
    (old / "manifest.json").write_text(json.dumps(data))
    assert load_manifest(old).channel_units is None
    data["channel_units"] = ["g"] * 5 + ["furlong"]
    (old / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"channel_units.*unknown unit 'furlong'"):
        load_manifest(old)
    data["channel_units"] = ["g"] * 3
    (old / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"channel_units.*3 unit\(s\) for 6 channel"):
        load_manifest(old)


def test_bundle_units_come_from_the_checkpoint_else_the_calibration_data(tmp_path: Path) -> None:
    calib = write_sensor_dataset(tmp_path / "calib", labels=2, per_label=1, seconds=1.0)
    names = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    model = SimpleNamespace(modality="sensor", channel_names=names, channel_units=None)
    assert _channel_units(model, calib) is None  # nobody states units
    with (calib / "dataset.toml").open("a") as fh:
        fh.write('[units]\ngyro_x = "deg/s"\nacc_x = "g"\n')
    assert _channel_units(model, calib) == ["g", None, None, "deg/s", None, None]
    model.channel_units = ["g"] * 3 + ["rad/s"] * 3
    assert _channel_units(model, calib) == ["g", "g", "g", "rad/s", "rad/s", "rad/s"]
    assert _channel_units(SimpleNamespace(modality="audio"), calib) is None

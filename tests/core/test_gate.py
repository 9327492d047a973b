"""The energy / activity gate in front of the model."""

from __future__ import annotations

import numpy as np
import pytest

from edgesiam.core.gate import SILENCE_DB, EnergyGate, rms_dbfs, sensor_activity
from edgesiam.errors import ConfigError, DataError

RATE = 16000


def tone(db: float, n: int = 8000) -> np.ndarray:
    """A sine whose RMS is ``db`` dBFS."""
    t = np.arange(n) / RATE
    return (np.sqrt(2) * 10 ** (db / 20) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_rms_dbfs_reference_levels() -> None:
    assert rms_dbfs(np.ones(100)) == pytest.approx(0.0)
    assert rms_dbfs(np.sin(2 * np.pi * np.arange(16000) / 160)) == pytest.approx(-3.0103, abs=1e-3)
    assert rms_dbfs(tone(-30)) == pytest.approx(-30, abs=0.01)
    assert rms_dbfs(np.zeros(10)) == SILENCE_DB == rms_dbfs(np.zeros(0))


def test_quiet_windows_are_skipped_after_the_hangover() -> None:
    gate = EnergyGate(threshold_db=-45.0, hangover=2)
    loud, quiet = tone(-30), tone(-60)
    seq = [quiet, loud, quiet, quiet, quiet, loud, quiet]
    assert [gate.is_active(w) for w in seq] == [False, True, True, True, False, True, True]
    assert gate.skipped == 2
    gate.reset()
    assert gate.skipped == 0 and not gate.is_active(quiet)
    batch = EnergyGate(hangover=2).active_mask(np.stack(seq))
    assert batch.tolist() == [False, True, True, True, False, True, True]
    np.testing.assert_allclose(gate.levels(np.stack(seq)), [gate.level(w) for w in seq], atol=1e-4)


def test_disabled_gate_and_modality_defaults() -> None:
    off = EnergyGate(enabled=False)
    assert off.is_active(np.zeros(100, np.float32))
    assert off.active_mask(np.zeros((3, 100), np.float32)).all()
    assert EnergyGate.for_modality("audio").enabled
    assert not EnergyGate.for_modality("sensor").enabled
    assert EnergyGate.for_modality("sensor", enabled=True).enabled
    with pytest.raises(ConfigError):
        EnergyGate.for_modality("video")


def test_sensor_activity_ignores_gravity_but_sees_motion_across_it() -> None:
    rng = np.random.default_rng(0)
    still = np.tile([0.0, 0.6, 0.8, 0.1, 0.1, 0.1], (100, 1)) + 1e-4 * rng.standard_normal((100, 6))
    t = np.arange(100) / 50
    moving = still.copy()
    moving[:, 0] += 0.5 * np.sin(2 * np.pi * 2 * t)
    gate = EnergyGate(hangover=0)
    # a motion across gravity barely changes the magnitude, but it is activity
    assert sensor_activity(still) < 1e-3 < 0.3 < sensor_activity(moving)
    rotation = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    turned = moving.copy()
    turned[:, :3] = moving[:, :3] @ rotation
    assert sensor_activity(turned) == pytest.approx(sensor_activity(moving))
    assert not gate.is_active(still) and gate.is_active(moving)
    assert gate.active_mask(np.stack([still, moving])).tolist() == [False, True]
    with_nan = moving.copy()
    with_nan[::3] = np.nan
    assert gate.is_active(with_nan)
    assert sensor_activity(np.full((5, 3), np.nan)) == 0.0
    assert sensor_activity(np.arange(10.0)) == pytest.approx(np.std(np.arange(10.0)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold_db": 3.0},
        {"threshold_db": float("nan")},
        {"threshold_db": -500.0},
        {"hangover": -1},
        {"hangover": 1.5},
        {"sensor_threshold": -0.1},
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        EnergyGate(**kwargs)


def test_bad_shapes() -> None:
    with pytest.raises(DataError):
        EnergyGate().level(np.zeros((2, 2, 2)))
    with pytest.raises(DataError):
        EnergyGate().active_mask(np.zeros(4))
    audio_nan = tone(-20)
    audio_nan[3] = np.nan
    assert not EnergyGate(hangover=0).is_active(audio_nan)

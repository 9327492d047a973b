"""Sensor units: names, conversion factors worked out by hand, and the gravity check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgesiam.core.units import (
    GravityCheck,
    canonical_unit,
    conversion_factors,
    declared_units,
    gravity_warning,
    resting_magnitude,
)
from edgesiam.errors import ConfigError

IMU = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
BUNDLE = ["g", "g", "g", "rad/s", "rad/s", "rad/s"]


def still_then_moving(n: int = 400, scale: float = 1.0) -> np.ndarray:
    """Gravity on z (1 g times ``scale``), lying still for a quarter, then shaken."""
    rng = np.random.default_rng(0)
    x = np.zeros((n, 6))
    x[:, 2] = 1.0
    x[n // 4 :, :3] += rng.normal(0, 0.4, size=(n - n // 4, 3))
    x[:, :3] *= scale
    return x.astype(np.float32)


def test_unit_names_and_aliases() -> None:
    assert canonical_unit(" m/s2") == "m/s^2" and canonical_unit("m/s²") == "m/s^2"
    assert canonical_unit("dps") == "deg/s" and canonical_unit("rad/s") == "rad/s"
    with pytest.raises(ConfigError, match=r"unknown unit 'mg'; known units: g, m/s\^2"):
        canonical_unit("mg")


def test_declared_units_as_list_or_table() -> None:
    assert declared_units(None, IMU, 6) == [None] * 6
    assert declared_units(["m/s2"] * 3 + ["dps"] * 3, IMU, 6) == ["m/s^2"] * 3 + ["deg/s"] * 3
    assert declared_units({"gyro_y": "dps"}, IMU, 6) == [None, None, None, None, "deg/s", None]
    with pytest.raises(ConfigError, match=r"2 unit.*6 channel"):
        declared_units(["g", "g"], IMU, 6)
    with pytest.raises(ConfigError, match=r"unknown channel.*gx"):
        declared_units({"gx": "dps"}, IMU, 6)


def test_conversion_factors_by_hand() -> None:
    factors = conversion_factors(["m/s^2"] * 3 + ["deg/s"] * 3, BUNDLE)
    assert factors is not None
    np.testing.assert_allclose(factors[:3], 1 / 9.80665, rtol=1e-6)
    np.testing.assert_allclose(factors[3:], math.pi / 180, rtol=1e-6)
    back = conversion_factors(BUNDLE, ["m/s^2"] * 3 + ["deg/s"] * 3)
    assert (
        back is not None
        and back[0] == pytest.approx(9.80665)
        and back[3] == pytest.approx(180 / math.pi, rel=1e-6)
    )
    assert conversion_factors(BUNDLE, BUNDLE) is None  # nothing to do
    assert conversion_factors([None] * 6, BUNDLE) is None  # undeclared: the bundle's already
    assert conversion_factors(["m/s^2"] * 6, None) is None  # a bundle without units
    with pytest.raises(ConfigError, match=r"channel 1 is declared in deg/s.*takes g"):
        conversion_factors(["deg/s"] * 6, BUNDLE)


def test_resting_magnitude_finds_the_still_stretch() -> None:
    x = still_then_moving()
    assert resting_magnitude(x[:, :3]) == pytest.approx(1.0, abs=1e-6)
    assert resting_magnitude(np.full((5, 3), np.nan)) is None


def test_gravity_check_names_what_it_saw_and_what_to_set() -> None:
    assert gravity_warning(still_then_moving(), BUNDLE, IMU, "source.units") is None
    si = still_then_moving(scale=9.80665)
    warning = gravity_warning(si, BUNDLE, IMU, "source.units")
    assert warning is not None
    assert "(acc_x, acc_y, acc_z) reads 9.81 g at rest, where gravity reads 1 g" in warning
    assert "look like m/s^2: set source.units to m/s^2 for acc_x, acc_y, acc_z" in warning
    in_g = gravity_warning(still_then_moving(), ["m/s^2"] * 3 + [None] * 3, IMU, "units")
    assert in_g is not None and "reads 1 m/s^2" in in_g and "look like g" in in_g
    linear = still_then_moving(scale=0.01)
    assert "gravity seems to be missing" in str(gravity_warning(linear, BUNDLE, IMU, "units"))
    assert gravity_warning(si, [None] * 6, IMU, "units") is None  # no units known: no check


def test_stream_gravity_check_warns_once_after_enough_samples() -> None:
    si = still_then_moving(scale=9.80665)
    check = GravityCheck(BUNDLE, IMU, "source.units", samples=300)
    said = [check.push(si[i : i + 50]) for i in range(0, 400, 50)]
    assert [s is not None for s in said] == [False] * 5 + [True] + [False] * 2

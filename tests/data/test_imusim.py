"""The IMU simulator gives what physics says for known motions, and distinct, repeatable classes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from edgesiam.core.baselines import channel_statistics
from edgesiam.core.rotations import rotation_matrices, uniform_rotations
from edgesiam.data.imusim import (
    Sensor,
    Style,
    Wearing,
    perform,
    random_motion,
    random_sensor,
    simulate,
    take,
    true_readings,
)

G = 9.80665
RATE = 50.0


@dataclass(frozen=True)
class Spin:
    """A body point at ``origin + accel t²/2`` turning at ``rate`` (rad/s) about a world axis."""

    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    rate: float = 0.0
    accel: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def position(self, t: np.ndarray) -> np.ndarray:
        return 0.5 * np.outer(t**2, self.accel)

    def orientation(self, t: np.ndarray) -> np.ndarray:
        return rotation_matrices(np.outer(self.rate * t, self.axis))


def still_sensor(mounting: np.ndarray, **errors: object) -> Sensor:
    return Sensor(mounting=mounting, **errors)  # type: ignore[arg-type]


def test_a_still_sensor_reads_one_g_against_gravity_in_its_own_frame_for_any_mounting() -> None:
    rng = np.random.default_rng(1)
    for mounting in uniform_rotations(5, rng):
        x = simulate(Spin(), still_sensor(mounting), 1.0, rng)
        # gravity points down (world -z): the accelerometer reads +1 g along world up, seen in
        # sensor axes: the third row of the mounting (sensor → world here) is world-up in them
        np.testing.assert_allclose(x[:, :3], np.tile(mounting[2], (50, 1)), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(x[:, :3], axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(x[:, 3:], 0.0, atol=1e-6)


def test_constant_rotation_reads_its_rate_on_the_gyro_in_the_sensor_frame() -> None:
    rng = np.random.default_rng(2)
    axis = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    mounting = uniform_rotations(1, rng)[0]
    x = simulate(Spin(tuple(axis), rate=3.0), still_sensor(mounting), 2.0, rng)
    # the body turns about a fixed world axis that is also fixed in the body: ω_b = 3·axis
    np.testing.assert_allclose(x[:, 3:], np.tile(3.0 * axis @ mounting, (100, 1)), atol=1e-4)


def test_a_point_on_a_circle_reads_centripetal_acceleration_toward_the_centre() -> None:
    radius, omega = 0.3, 4.0
    sensor = Sensor(lever_m=np.array([radius, 0.0, 0.0]))  # sensor x points away from the axis
    acc, gyro = true_readings(Spin(rate=omega), sensor, np.linspace(0.0, 2.0, 101))
    np.testing.assert_allclose(acc[:, 0], -radius * omega**2 / G, rtol=1e-5)  # toward the centre
    np.testing.assert_allclose(acc[:, 1], 0.0, atol=1e-6)  # no tangential term at constant ω
    np.testing.assert_allclose(acc[:, 2], 1.0, atol=1e-6)
    np.testing.assert_allclose(gyro, np.tile([0.0, 0.0, omega], (101, 1)), atol=1e-6)


def test_an_angular_acceleration_adds_the_tangential_term() -> None:
    radius, alpha = 0.2, 5.0

    @dataclass(frozen=True)
    class SpinUp(Spin):
        def orientation(self, t: np.ndarray) -> np.ndarray:
            return rotation_matrices(np.outer(0.5 * alpha * t**2, (0.0, 0.0, 1.0)))

    acc, gyro = true_readings(
        SpinUp(), Sensor(lever_m=np.array([radius, 0.0, 0.0])), np.array([1.0])
    )
    np.testing.assert_allclose(
        acc[0], [-radius * (alpha * 1.0) ** 2 / G, radius * alpha / G, 1.0], rtol=1e-4
    )
    np.testing.assert_allclose(gyro[0], [0.0, 0.0, alpha], rtol=1e-6)


def test_a_known_linear_acceleration_appears_in_the_accelerometer() -> None:
    a = np.array([2.0, -1.0, 3.0])
    acc, _ = true_readings(Spin(accel=tuple(a)), Sensor(), np.linspace(0.0, 1.0, 11))
    np.testing.assert_allclose(acc, np.tile((a + np.array([0.0, 0.0, G])) / G, (11, 1)), rtol=1e-6)


def test_saturation_clips_at_the_range_and_errors_apply() -> None:
    rng = np.random.default_rng(3)
    fast = Spin(rate=50.0)  # 50 rad/s on the gyro
    sensor = Sensor(lever_m=np.array([0.5, 0.0, 0.0]), acc_range_g=4.0, gyro_range=30.0)
    x = simulate(fast, sensor, 0.5, rng)
    np.testing.assert_allclose(x[:, 0], -4.0)  # -127 g centripetal, clipped
    np.testing.assert_allclose(x[:, 5], 30.0)
    biased = Sensor(acc_bias_g=np.array([0.1, 0.0, 0.0]), acc_scale=np.array([1.0, 1.0, 1.1]))
    y = simulate(Spin(), biased, 0.2, rng)
    np.testing.assert_allclose(y[:, :3], np.tile([0.1, 0.0, 1.1], (10, 1)), atol=1e-6)
    noisy = simulate(Spin(), Sensor(acc_noise_g=0.05), 20.0, rng)
    assert noisy[:, 2].std() == pytest.approx(0.05, rel=0.1)


def test_the_same_seed_gives_the_same_recording() -> None:
    def make(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        motion = perform(random_motion(rng), rng)
        return take(motion, random_sensor(rng), 4.0, rng)

    np.testing.assert_array_equal(make(7), make(7))
    assert not np.array_equal(make(7), make(8))
    assert make(7).shape == (200, 6) and make(7).dtype == np.float32


def _features(x: np.ndarray) -> np.ndarray:
    return channel_statistics(x)[: 2 * 6]  # per-channel mean and std


def test_performers_of_one_class_are_closer_than_two_classes() -> None:
    rng = np.random.default_rng(11)
    wearing = Wearing(mounting_deg=10.0)
    within, between = [], []
    motions = [random_motion(rng) for _ in range(12)]
    takes = [
        [
            _features(take(perform(m, rng, Style()), random_sensor(rng, wearing), 6.0, rng))
            for _ in range(3)
        ]
        for m in motions
    ]
    for i, a in enumerate(takes):
        within += [np.linalg.norm(a[0] - a[1]), np.linalg.norm(a[1] - a[2])]
        between += [np.linalg.norm(a[0] - b[0]) for b in takes[i + 1 :]]
    assert np.median(within) < 0.5 * np.median(between)
    assert min(between) > 0.0  # no two classes alike


def test_a_gesture_is_still_before_and_after_it() -> None:
    rng = np.random.default_rng(5)
    motion = dataclasses.replace(random_motion(rng, gesture_p=1.0), onset_s=1.0)
    assert motion.gesture_s is not None
    x = simulate(motion, Sensor(), motion.gesture_s + 2.0, rng)
    t = np.arange(x.shape[0]) / RATE
    outside = (t < 1.0) | (t > 1.0 + motion.gesture_s)
    np.testing.assert_allclose(x[outside, 3:], 0.0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(x[outside, :3], axis=1), 1.0, atol=1e-6)
    assert np.abs(x[~outside, 3:]).max() > 0.01

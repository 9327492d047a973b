"""A body-worn IMU simulator: procedural motions → accelerometer (with gravity) and gyroscope.

Real IMU sets hold a handful of activities; an encoder that must separate movements it has never
seen needs thousands of distinct classes. Here a *class* is a random smooth 3-D motion of a body
point (a position trajectory and an orientation trajectory, each a short Fourier series, either
periodic or a one-shot gesture under a smooth envelope); a *performer* plays it with their own
tempo, amplitude, posture and small shape changes; a *sensor* is mounted on the body with a
rotation and a lever arm (so turning the body adds tangential and centripetal acceleration) and
measures with scale error, bias, noise and a saturating range.

Physics, in a world frame with z up: the sensor sits at ``p_s = p + R_b r`` (``R_b`` body → world,
``r`` the lever arm in the body frame) with orientation ``R_s = R_b M`` (``M`` the mounting,
sensor → body). The accelerometer reads the specific force ``R_sᵀ (p̈_s − g)`` in g (still: 1 g
upwards, opposite gravity); the gyroscope reads the angular rate in the sensor frame,
``Mᵀ ω_b`` with ``[ω_b]ₓ = R_bᵀ Ṙ_b``, in rad/s. Derivatives are central finite differences of
the analytic trajectories on a step of :data:`STEP_S`, accurate far below sensor noise.

Output rows are samples, columns :data:`CHANNELS` (HAPT's names and order), units :data:`UNITS`.
numpy only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from edgesiam.core.rotations import (
    bounded_rotations,
    rotation_matrices,
    rotation_vectors,
    uniform_rotations,
)
from edgesiam.core.units import STANDARD_GRAVITY

FloatArray = npt.NDArray[np.float64]

CHANNELS: Final = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
UNITS: Final = ("g", "g", "g", "rad/s", "rad/s", "rad/s")
GRAVITY: Final = np.array([0.0, 0.0, -STANDARD_GRAVITY])
"""Gravitational acceleration in the world frame (z up), m/s²."""
STEP_S: Final = 1e-3
"""Finite-difference step for velocities and accelerations."""


class Trajectory(Protocol):
    """Where a body point is and how it is turned, at any times ``t`` ``(n,)`` in seconds."""

    def position(self, t: FloatArray) -> FloatArray:
        """``(n, 3)`` metres, world frame."""
        ...

    def orientation(self, t: FloatArray) -> FloatArray:
        """``(n, 3, 3)`` rotations body → world."""
        ...


# --- the sensor -----------------------------------------------------------------------------------


def _zeros3() -> FloatArray:
    return np.zeros(3)


def _ones3() -> FloatArray:
    return np.ones(3)


@dataclass(frozen=True)
class Sensor:
    """How an IMU is worn and what its measurements suffer.

    ``mounting`` turns sensor axes into body axes; ``lever_m`` is the sensor's offset from the body
    point, in the body frame. Errors apply as ``clip(scale · true + bias + noise, ±range)``.
    """

    mounting: FloatArray = field(default_factory=lambda: np.eye(3))
    lever_m: FloatArray = field(default_factory=_zeros3)
    acc_scale: FloatArray = field(default_factory=_ones3)
    gyro_scale: FloatArray = field(default_factory=_ones3)
    acc_bias_g: FloatArray = field(default_factory=_zeros3)
    gyro_bias: FloatArray = field(default_factory=_zeros3)
    acc_noise_g: float = 0.0
    gyro_noise: float = 0.0
    acc_range_g: float = 8.0
    gyro_range: float = float(np.deg2rad(2000.0))


def true_readings(
    trajectory: Trajectory, sensor: Sensor, t: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Error-free ``(acc in g, gyro in rad/s)``, each ``(n, 3)`` in the sensor frame, at ``t``."""
    h = STEP_S
    times = np.concatenate([t - h, t, t + h])
    rot = trajectory.orientation(times)
    where = trajectory.position(times) + np.einsum("nij,j->ni", rot, sensor.lever_m)
    before, now, after = np.split(where, 3)
    acceleration = (after - 2.0 * now + before) / (h * h)
    r_before, r_now, r_after = np.split(rot, 3)
    sensor_to_world = r_now @ sensor.mounting
    force = np.einsum("nji,nj->ni", sensor_to_world, acceleration - GRAVITY) / STANDARD_GRAVITY
    turn = np.einsum("nji,njk->nik", r_before, r_after)  # body frame, t-h → t+h
    body_rate = rotation_vectors(turn) / (2.0 * h)
    return force, body_rate @ sensor.mounting


def measure(
    sensor: Sensor, acc: FloatArray, gyro: FloatArray, rng: np.random.Generator
) -> FloatArray:
    """True readings through the sensor's scale, bias, white noise and range → ``(n, 6)``."""
    a = (
        sensor.acc_scale * acc
        + sensor.acc_bias_g
        + sensor.acc_noise_g * rng.standard_normal(acc.shape)
    )
    w = (
        sensor.gyro_scale * gyro
        + sensor.gyro_bias
        + sensor.gyro_noise * rng.standard_normal(gyro.shape)
    )
    a = np.clip(a, -sensor.acc_range_g, sensor.acc_range_g)
    w = np.clip(w, -sensor.gyro_range, sensor.gyro_range)
    return np.concatenate([a, w], axis=1)


def simulate(
    trajectory: Trajectory,
    sensor: Sensor,
    duration_s: float,
    rng: np.random.Generator,
    sample_rate: float = 50.0,
    start_s: float = 0.0,
) -> npt.NDArray[np.float32]:
    """A recording ``(n, 6)`` float32 of ``sensor`` following ``trajectory`` (:data:`CHANNELS`)."""
    t = start_s + np.arange(round(duration_s * sample_rate)) / sample_rate
    acc, gyro = true_readings(trajectory, sensor, t)
    return measure(sensor, acc, gyro, rng).astype(np.float32)


# --- procedural motions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HarmonicMotion:
    """A smooth motion: position and rotation vector are Fourier series over a fundamental.

    ``position`` and ``rotation`` are ``(K, 3, 2)`` cosine/sine coefficients of harmonics 1..K (m,
    rad), added to the rest ``attitude`` (body → world). Periodic when ``gesture_s`` is None;
    otherwise a one-shot gesture of that length starting at ``onset_s``, shaped by a sin⁴
    envelope (still before and after, with continuous acceleration at the edges).
    """

    frequency_hz: float
    position_coef: FloatArray
    rotation_coef: FloatArray
    attitude: FloatArray
    gesture_s: float | None = None
    onset_s: float = 0.0

    def _series(self, coef: FloatArray, t: FloatArray) -> FloatArray:
        k = np.arange(1, coef.shape[0] + 1)
        if self.gesture_s is None:
            phase = 2.0 * np.pi * self.frequency_hz * np.outer(t, k)
            return np.cos(phase) @ coef[:, :, 0] + np.sin(phase) @ coef[:, :, 1]
        u = np.clip((t - self.onset_s) / self.gesture_s, 0.0, 1.0)
        phase = 2.0 * np.pi * np.outer(u, k)
        envelope = np.sin(np.pi * u) ** 4
        series = np.cos(phase) @ coef[:, :, 0] + np.sin(phase) @ coef[:, :, 1]
        return np.asarray(envelope[:, None] * series)

    def position(self, t: FloatArray) -> FloatArray:
        return self._series(self.position_coef, t)

    def orientation(self, t: FloatArray) -> FloatArray:
        return np.asarray(self.attitude @ rotation_matrices(self._series(self.rotation_coef, t)))

    @property
    def period_s(self) -> float:
        """The length of one cycle (periodic) or of the gesture."""
        return self.gesture_s if self.gesture_s is not None else 1.0 / self.frequency_hz


def random_motion(rng: np.random.Generator, gesture_p: float = 0.4) -> HarmonicMotion:
    """A new motion class: periodic (0.4–2.5 Hz) or a one-shot gesture (0.8–2.5 s), 1–4
    harmonics of decreasing size, any rest attitude.

    Sizes are drawn as peak acceleration (0.02–1.5 g) and angular rate (0.05–5 rad/s) of the
    fundamental, log-uniform, so classes range from near-still postures to brisk movements
    like the people wearing real sensors.
    """
    gesture = bool(rng.random() < gesture_p)
    harmonics = int(rng.integers(1, 5))
    gesture_s = float(rng.uniform(0.8, 2.5)) if gesture else None
    frequency = 1.0 / gesture_s if gesture_s else float(rng.uniform(0.4, 2.5))
    w = 2.0 * np.pi * frequency
    acc_g, rate = np.exp(rng.uniform(np.log([0.02, 0.05]), np.log([1.5, 5.0])))
    decay = np.arange(1, harmonics + 1, dtype=np.float64)[:, None, None] ** -2.0
    reach = acc_g * STANDARD_GRAVITY / w**2 * rng.uniform(0.2, 1.0, size=(1, 3, 1))
    turn = rate / w * rng.uniform(0.2, 1.0, size=(1, 3, 1))
    return HarmonicMotion(
        frequency_hz=frequency,
        position_coef=reach * decay * rng.standard_normal((harmonics, 3, 2)) / np.sqrt(2),
        rotation_coef=turn * decay * rng.standard_normal((harmonics, 3, 2)) / np.sqrt(2),
        attitude=uniform_rotations(1, rng)[0],
        gesture_s=gesture_s,
    )


@dataclass(frozen=True)
class Style:
    """How much performers of one motion differ: relative tempo and amplitude spreads, shape
    noise (relative to each harmonic's size) and posture (degrees of rest-attitude change)."""

    tempo: float = 0.15
    amplitude: float = 0.2
    shape: float = 0.15
    posture_deg: float = 10.0


def perform(
    motion: HarmonicMotion, rng: np.random.Generator, style: Style = Style()
) -> HarmonicMotion:
    """One performer's version of ``motion``: own tempo, amplitude, shape and posture."""
    tempo = rng.uniform(1.0 - style.tempo, 1.0 + style.tempo)
    gain = rng.uniform(1.0 - style.amplitude, 1.0 + style.amplitude)

    def reshaped(coef: FloatArray) -> FloatArray:
        size = np.sqrt(np.mean(coef**2, axis=(1, 2), keepdims=True))
        return np.asarray(gain * coef + style.shape * size * rng.standard_normal(coef.shape))

    posture = bounded_rotations(1, np.deg2rad(style.posture_deg), rng)[0]
    return dataclasses.replace(
        motion,
        frequency_hz=motion.frequency_hz * tempo,
        gesture_s=None if motion.gesture_s is None else motion.gesture_s / tempo,
        position_coef=reshaped(motion.position_coef),
        rotation_coef=reshaped(motion.rotation_coef),
        attitude=posture @ motion.attitude,
    )


@dataclass(frozen=True)
class SensorErrors:
    """How the sensors of one kind err, in their units (accelerometers: g, gyroscopes: rad/s):
    the spread of a sensor's bias, its white noise, and the full-scale ranges it may be set to."""

    bias: float
    noise: float
    ranges: tuple[float, ...]


@dataclass(frozen=True)
class Wearing:
    """Spreads of how sensors are worn and how good they are (drawn by :func:`random_sensor`)."""

    mounting_deg: float = 20.0
    lever_m: float = 0.05
    scale: float = 0.02
    acc: SensorErrors = SensorErrors(bias=0.02, noise=0.01, ranges=(4.0, 8.0, 16.0))
    gyro: SensorErrors = SensorErrors(
        bias=0.02, noise=0.01, ranges=(float(np.deg2rad(1000.0)), float(np.deg2rad(2000.0)))
    )


def random_sensor(rng: np.random.Generator, wearing: Wearing = Wearing()) -> Sensor:
    """A sensor worn with a random mounting rotation and lever arm, with random errors."""
    mounting = bounded_rotations(1, np.deg2rad(wearing.mounting_deg), rng)[0]
    direction = rng.standard_normal(3)
    lever = direction / np.linalg.norm(direction) * rng.uniform(0.0, wearing.lever_m)
    return Sensor(
        mounting=mounting,
        lever_m=lever,
        acc_scale=1.0 + wearing.scale * rng.standard_normal(3),
        gyro_scale=1.0 + wearing.scale * rng.standard_normal(3),
        acc_bias_g=wearing.acc.bias * rng.standard_normal(3),
        gyro_bias=wearing.gyro.bias * rng.standard_normal(3),
        acc_noise_g=wearing.acc.noise,
        gyro_noise=wearing.gyro.noise,
        acc_range_g=float(rng.choice(wearing.acc.ranges)),
        gyro_range=float(rng.choice(wearing.gyro.ranges)),
    )


def take(
    motion: HarmonicMotion,
    sensor: Sensor,
    duration_s: float,
    rng: np.random.Generator,
    sample_rate: float = 50.0,
) -> npt.NDArray[np.float32]:
    """One recording of a performed motion: a periodic one from a random phase, a gesture at a
    random onset within the recording (still before and after it)."""
    if motion.gesture_s is None:
        start = float(rng.uniform(0.0, motion.period_s))
        return simulate(motion, sensor, duration_s, rng, sample_rate, start_s=start)
    room = max(duration_s - motion.gesture_s, 0.0)
    placed = dataclasses.replace(motion, onset_s=float(rng.uniform(0.0, room)))
    return simulate(placed, sensor, duration_s, rng, sample_rate)

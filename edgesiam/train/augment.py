"""Training-time augmentation of raw windows and features.

Every function takes the ``np.random.Generator`` it draws from, so a seeded run is reproducible and
the data loader decides how generators are split across workers. Inputs are never modified; each
call returns a new float32 array of the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.signal import fftconvolve

from edgesiam.core.rotations import bounded_rotations, uniform_rotations
from edgesiam.errors import ConfigError, DataError

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
Range = tuple[float, float]

_EPS = 1e-12


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value}")


def _check_range(name: str, bounds: Range, lowest: float = -np.inf) -> Range:
    low, high = (float(b) for b in bounds)
    if not low <= high:
        raise ConfigError(f"{name} must be a (low, high) range with low <= high, got {bounds}")
    if low < lowest:
        raise ConfigError(f"{name} must not go below {lowest}, got {bounds}")
    return low, high


def _as_batch(batch: npt.ArrayLike, ndim: int, shape_name: str) -> Float64Array:
    array = np.array(batch, dtype=np.float64)
    if array.ndim != ndim:
        raise DataError(f"augmentation expects a batch {shape_name}, got shape {array.shape}")
    return array


def _recordings(name: str, recordings: Sequence[npt.ArrayLike] | None) -> list[Float32Array] | None:
    """Validate noise or RIR recordings: mono, non-empty, not silent (kept float32: noise banks
    can be large)."""
    if recordings is None:
        return None
    arrays = [np.asarray(r, dtype=np.float32) for r in recordings]
    if not arrays:
        raise ConfigError(f"{name} is an empty list; pass None to disable it")
    for index, array in enumerate(arrays):
        if array.ndim != 1 or array.size == 0 or not np.any(array):
            raise DataError(f"{name}[{index}] must be a non-empty, non-silent mono recording")
    return arrays


# --- audio -------------------------------------------------------------------------------------


class AudioAugmenter:
    """Random shift, reverberation, additive noise and gain on raw audio windows ``(B, N)``.

    Applied in that order, each independently per example: a circular or zero-filled shift by up
    to ``shift_max`` of the window; with probability ``reverb_p`` convolution with a random room
    impulse response; with probability ``noise_p`` a random excerpt of a random noise recording
    mixed at a random SNR from ``snr_db``; a random gain from ``gain_db``, then clipping to [-1, 1]
    as an ADC would.
    """

    def __init__(
        self,
        noise: Sequence[npt.ArrayLike] | None = None,
        rirs: Sequence[npt.ArrayLike] | None = None,
        snr_db: Range = (5.0, 20.0),
        noise_p: float = 0.5,
        gain_db: Range = (-6.0, 6.0),
        shift_max: float = 0.1,
        reverb_p: float = 0.3,
        shift_fill: Literal["circular", "zero"] = "circular",
        channel_p: float = 0.0,
        sample_rate: int = 16000,
    ) -> None:
        _check_probability("noise_p", noise_p)
        _check_probability("reverb_p", reverb_p)
        _check_probability("channel_p", channel_p)
        self.channel_p = channel_p
        self.sample_rate = sample_rate
        if not 0.0 <= shift_max <= 1.0:
            raise ConfigError(f"shift_max is a fraction of the window in [0, 1], got {shift_max}")
        if shift_fill not in ("circular", "zero"):
            raise ConfigError(f"shift_fill must be 'circular' or 'zero', got {shift_fill!r}")
        self.noise = _recordings("noise", noise)
        checked_rirs = _recordings("rirs", rirs)
        self.rirs = None if checked_rirs is None else [_from_direct_path(r) for r in checked_rirs]
        self.snr_db = _check_range("snr_db", snr_db)
        self.gain_db = _check_range("gain_db", gain_db)
        self.noise_p = noise_p
        self.reverb_p = reverb_p
        self.shift_max = shift_max
        self.shift_fill = shift_fill

    def __call__(self, batch: npt.ArrayLike, rng: np.random.Generator) -> Float32Array:
        """Augment a batch of raw windows ``(B, N)``; returns a new float32 array."""
        x = _as_batch(batch, 2, "(B, N) of raw audio windows")
        x = self._shift(x, rng)
        if self.rirs is not None:
            x = self._reverberate(x, self.rirs, rng)
        if self.noise is not None:
            x = self._add_noise(x, self.noise, rng)
        if self.channel_p > 0:
            rows = np.flatnonzero(rng.random(x.shape[0]) < self.channel_p)
            x[rows] = random_channel(x[rows], self.sample_rate, rng)
        gains = 10.0 ** (rng.uniform(*self.gain_db, size=(x.shape[0], 1)) / 20.0)
        return np.clip(x * gains, -1.0, 1.0).astype(np.float32)

    def _shift(self, x: Float64Array, rng: np.random.Generator) -> Float64Array:
        n = x.shape[1]
        limit = int(self.shift_max * n)
        shifts = np.asarray(rng.integers(-limit, limit + 1, size=x.shape[0]))
        source = (np.arange(n)[None, :] - shifts[:, None]) % n
        shifted = np.take_along_axis(x, source, axis=1)
        if self.shift_fill == "zero":
            target = np.arange(n)[None, :]
            wrapped = (target < shifts[:, None]) | (target >= n + shifts[:, None])
            shifted[wrapped] = 0.0
        return shifted

    def _reverberate(
        self, x: Float64Array, rirs: list[Float32Array], rng: np.random.Generator
    ) -> Float64Array:
        """Convolve chosen examples with a random RIR, cut to N samples, scaled to keep the peak."""
        out = x.copy()
        for row in np.flatnonzero(rng.random(x.shape[0]) < self.reverb_p):
            rir = rirs[rng.integers(len(rirs))]
            wet = fftconvolve(x[row], rir)[: x.shape[1]]
            peak_in, peak_out = np.abs(x[row]).max(), np.abs(wet).max()
            out[row] = wet * (peak_in / peak_out) if peak_out > _EPS else wet
        return out

    def _add_noise(
        self, x: Float64Array, noise: list[Float32Array], rng: np.random.Generator
    ) -> Float64Array:
        """Mix a noise excerpt into chosen examples so that signal power / noise power = the SNR."""
        out = x.copy()
        n = x.shape[1]
        for row in np.flatnonzero(rng.random(x.shape[0]) < self.noise_p):
            excerpt = _random_excerpt(noise[rng.integers(len(noise))], n, rng)
            snr_db = rng.uniform(*self.snr_db)
            signal_power = np.mean(np.square(x[row]))
            noise_power = np.mean(np.square(excerpt, dtype=np.float64))
            if signal_power <= _EPS or noise_power <= _EPS:
                continue
            scale = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
            out[row] = x[row] + scale * excerpt
        return out


def random_channel(x: Float64Array, sample_rate: int, rng: np.random.Generator) -> Float64Array:
    """Each row of ``x (B, N)`` as heard through its own random device channel.

    A channel here is what stays constant for a microphone, a line or a codec: a band limit (a
    low cut of 50–400 Hz and a high cut of 2.8–7.5 kHz, each with a smooth skirt), a few equaliser
    peaks and dips (±9 dB, a third of an octave to two octaves wide), and, for some rows, 8-bit
    µ-law companding or soft clipping. None of it is one of the real codecs or rooms that
    out-of-domain evaluation uses, so those stay unseen.
    """
    if x.shape[0] == 0:
        return x
    n = x.shape[1]
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    logf = np.log2(np.maximum(freqs, 1.0))[None, :]
    b = x.shape[0]
    low = rng.uniform(50, 400, size=(b, 1))
    high = np.minimum(rng.uniform(2800, 7500, size=(b, 1)), 0.95 * sample_rate / 2)
    skirt = rng.uniform(0.15, 0.6, size=(b, 1))  # octaves from full gain to about -20 dB
    band = _sigmoid((logf - np.log2(low)) / (skirt / 4)) * _sigmoid(
        (np.log2(high) - logf) / (skirt / 4)
    )
    gain_db = np.zeros((b, freqs.shape[0]))
    for _ in range(3):
        centre = rng.uniform(np.log2(150), np.log2(6000), size=(b, 1))
        width = rng.uniform(1 / 3, 2, size=(b, 1))
        gain_db += rng.uniform(-9, 9, size=(b, 1)) * np.exp(
            -0.5 * ((logf - centre) / (width / 2)) ** 2
        )
    response = band * 10.0 ** (gain_db / 20.0)
    y = np.fft.irfft(np.fft.rfft(x, axis=1) * response, n, axis=1)
    peak_in = np.abs(x).max(axis=1, keepdims=True)
    peak_out = np.maximum(np.abs(y).max(axis=1, keepdims=True), _EPS)
    y *= peak_in / peak_out
    kind = np.asarray(rng.random(b))
    mu = kind < 0.3
    if mu.any():  # 8-bit µ-law: quantise in the companded domain
        c = np.sign(y[mu]) * np.log1p(255 * np.abs(y[mu])) / np.log(256.0)
        c = np.round(c * 127) / 127
        y[mu] = np.sign(c) * np.expm1(np.abs(c) * np.log(256.0)) / 255
    clip = (kind >= 0.3) & (kind < 0.5)
    if clip.any():
        drive = rng.uniform(1.5, 6, size=(int(clip.sum()), 1))
        peak = np.maximum(peak_in[clip], _EPS)
        y[clip] = np.tanh(drive * y[clip] / peak) / np.tanh(drive) * peak
    return y


def _sigmoid(z: Float64Array) -> Float64Array:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _from_direct_path(rir: Float32Array) -> Float32Array:
    """Drop what precedes the direct-path peak, so reverberation does not delay the window."""
    return rir[int(np.argmax(np.abs(rir))) :]


def _random_excerpt(recording: Float32Array, length: int, rng: np.random.Generator) -> Float32Array:
    """``length`` consecutive samples from a random offset, looping a recording that is shorter."""
    if recording.shape[0] < length:
        recording = np.tile(recording, -(-length // recording.shape[0]))
    offset = int(rng.integers(recording.shape[0] - length + 1))
    return recording[offset : offset + length]


# --- features ----------------------------------------------------------------------------------


def spec_augment(
    features: npt.ArrayLike,
    rng: np.random.Generator,
    freq_masks: int = 2,
    freq_width: int = 6,
    time_masks: int = 2,
    time_width: int = 10,
) -> Float32Array:
    """SpecAugment-style masking of features ``(B, C, T)``.

    Each example gets ``freq_masks`` bands of 0..``freq_width`` channels and ``time_masks`` spans of
    0..``time_width`` frames at random places, filled with that example's mean so that masking does
    not shift its level.
    """
    x = _as_batch(features, 3, "(B, C, T) of features")
    for name, value in (
        ("freq_masks", freq_masks),
        ("freq_width", freq_width),
        ("time_masks", time_masks),
        ("time_width", time_width),
    ):
        if value < 0:
            raise ConfigError(f"spec_augment {name} must be >= 0, got {value}")
    batch, channels, frames = x.shape
    masked_channels = _random_spans(batch, channels, freq_masks, freq_width, rng)
    masked_frames = _random_spans(batch, frames, time_masks, time_width, rng)
    masked = masked_channels[:, :, None] | masked_frames[:, None, :]
    means = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    return np.where(masked, means, x).astype(np.float32)


def _random_spans(
    batch: int, length: int, count: int, max_width: int, rng: np.random.Generator
) -> npt.NDArray[np.bool_]:
    """``(batch, length)`` mask: per row, ``count`` spans of 0..max_width positions at random."""
    widths = rng.integers(0, min(max_width, length) + 1, size=(batch, count, 1))
    starts = rng.integers(0, length - widths + 1)
    positions = np.arange(length)[None, None, :]
    inside = (positions >= starts) & (positions < starts + widths)
    return np.asarray(inside.any(axis=1))


# --- IMU ---------------------------------------------------------------------------------------


class ImuAugmenter:
    """Time warp, rotation, per-channel scale and jitter on raw IMU windows ``(B, N, C)``.

    ``triads`` lists the channel indices of each 3-axis sensor (e.g. accelerometer and gyroscope).
    One rotation per example is applied to every triad, since the sensors share one housing: a
    device worn differently turns acceleration and rotation rate alike. With ``max_angle_deg=180``
    rotations are uniform over all of SO(3); below that, a uniform random axis is turned by an angle
    uniform in [0, max_angle_deg]. ``scale`` draws one gain per example and channel (sensor
    calibration), ``jitter_std`` adds Gaussian noise with that fraction of each channel's std in the
    window, and ``time_warp`` bends the time axis by up to that relative speed change.
    ``triad_scale`` draws one gain per example and triad, log-uniform in its range: a sensor whose
    scale or units are not what its dataset says (raw counts, m/s² read as g) still matches.
    """

    def __init__(
        self,
        triads: Sequence[tuple[int, int, int]],
        rotate: bool = True,
        max_angle_deg: float = 180.0,
        scale: Range = (0.9, 1.1),
        jitter_std: float = 0.01,
        time_warp: float = 0.1,
        triad_scale: Range = (1.0, 1.0),
    ) -> None:
        self.triads = _checked_triads(triads)
        self.triad_scale = _check_range("triad_scale", triad_scale, lowest=1e-6)
        if not 0.0 <= max_angle_deg <= 180.0:
            raise ConfigError(f"max_angle_deg must be in [0, 180], got {max_angle_deg}")
        if jitter_std < 0.0:
            raise ConfigError(f"jitter_std must be >= 0, got {jitter_std}")
        if not 0.0 <= time_warp < 1.0:
            raise ConfigError(f"time_warp is a relative speed change in [0, 1), got {time_warp}")
        self.rotate = rotate
        self.max_angle_deg = float(max_angle_deg)
        self.scale = _check_range("scale", scale, lowest=0.0)
        self.jitter_std = float(jitter_std)
        self.time_warp = float(time_warp)

    def __call__(self, batch: npt.ArrayLike, rng: np.random.Generator) -> Float32Array:
        """Augment a batch of raw IMU windows ``(B, N, C)``; returns a new float32 array."""
        x = _as_batch(batch, 3, "(B, N, C) of raw sensor windows")
        highest = max((max(t) for t in self.triads), default=-1)
        if highest >= x.shape[2]:
            raise DataError(
                f"IMU triads use channel {highest}, but the windows have {x.shape[2]} channels"
            )
        if self.time_warp > 0.0:
            x = _time_warp(x, self.time_warp, rng)
        if self.rotate and self.triads:
            x = self._rotate(x, rng)
        x = x * rng.uniform(*self.scale, size=(x.shape[0], 1, x.shape[2]))
        if self.triad_scale != (1.0, 1.0):
            x = self._scale_triads(x, rng)
        if self.jitter_std > 0.0:
            x = x + rng.standard_normal(x.shape) * (self.jitter_std * x.std(axis=1, keepdims=True))
        return x.astype(np.float32)

    def _scale_triads(self, x: Float64Array, rng: np.random.Generator) -> Float64Array:
        low, high = np.log(self.triad_scale)
        out = x.copy()
        for triad in self.triads:
            gains = np.exp(rng.uniform(low, high, size=(x.shape[0], 1, 1)))
            out[:, :, list(triad)] *= gains
        return out

    def _rotate(self, x: Float64Array, rng: np.random.Generator) -> Float64Array:
        if self.max_angle_deg >= 180.0:
            rotations = uniform_rotations(x.shape[0], rng)
        else:
            rotations = bounded_rotations(x.shape[0], np.deg2rad(self.max_angle_deg), rng)
        out = x.copy()
        for triad in self.triads:
            columns = list(triad)
            out[:, :, columns] = np.einsum("bnj,bij->bni", x[:, :, columns], rotations)
        return out


def _checked_triads(triads: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    checked = [tuple(int(i) for i in t) for t in triads]
    used = [i for t in checked for i in t]
    if any(len(t) != 3 for t in checked) or any(i < 0 for i in used):
        raise ConfigError(f"IMU triads must be triples of channel indices >= 0, got {triads}")
    if len(set(used)) != len(used):
        raise ConfigError(f"IMU triads must not share channels, got {triads}")
    return [(t[0], t[1], t[2]) for t in checked]


def _time_warp(
    x: Float64Array, strength: float, rng: np.random.Generator, knots: int = 4
) -> Float64Array:
    """Resample each example along a smooth random time map that keeps its first and last sample.

    The local speed is interpolated between ``knots`` random values in [1 - strength, 1 + strength];
    its running sum, scaled to span the window, says where each output sample is read from.
    """
    batch, n, _ = x.shape
    grid = np.linspace(0.0, 1.0, n)
    knot_positions = np.linspace(0.0, 1.0, knots)
    speeds = rng.uniform(1.0 - strength, 1.0 + strength, size=(batch, knots))
    out = np.empty_like(x)
    for row in range(batch):
        speed = np.interp(grid, knot_positions, speeds[row])
        position = np.concatenate([[0.0], np.cumsum(speed[:-1])])
        position *= (n - 1) / max(position[-1], _EPS)
        lower = np.clip(np.floor(position).astype(np.int64), 0, max(n - 2, 0))
        upper = np.minimum(lower + 1, n - 1)
        fraction = (position - lower)[:, None]
        out[row] = x[row, lower] * (1.0 - fraction) + x[row, upper] * fraction
    return out

"""Augmentation: shapes and dtypes kept, seeded determinism, SNR, rotations, SpecAugment masks."""

from __future__ import annotations

import numpy as np
import pytest

from edgesiam.errors import ConfigError, DataError
from edgesiam.train.augment import (
    AudioAugmenter,
    ImuAugmenter,
    bounded_rotations,
    random_channel,
    spec_augment,
    uniform_rotations,
)

ACC, GYRO = (0, 1, 2), (3, 4, 5)


def tones(batch: int = 8, n: int = 4000, amplitude: float = 0.1) -> np.ndarray:
    t = np.arange(n) / 16000
    freqs = np.linspace(200, 900, batch)[:, None]
    return (amplitude * np.sin(2 * np.pi * freqs * t)).astype(np.float32)


def noise_bank(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(np.float32) for n in (9000, 2500)]


def imu_windows(batch: int = 6, n: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, n, 6)).astype(np.float32)


def power_db(x: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.mean(np.square(x.astype(np.float64)), axis=-1))


# --- audio -------------------------------------------------------------------------------------


def test_audio_keeps_shape_and_dtype_and_input() -> None:
    batch = tones()
    original = batch.copy()
    augmenter = AudioAugmenter(noise_bank(), rirs=[np.exp(-np.arange(800) / 100.0)])
    out = augmenter(batch, np.random.default_rng(0))
    assert out.shape == batch.shape
    assert out.dtype == np.float32
    assert np.all(np.abs(out) <= 1.0)
    np.testing.assert_array_equal(batch, original)


def test_audio_is_deterministic_for_a_seed() -> None:
    augmenter = AudioAugmenter(noise_bank(), rirs=[np.exp(-np.arange(800) / 100.0)], reverb_p=0.5)
    first = augmenter(tones(), np.random.default_rng(7))
    again = augmenter(tones(), np.random.default_rng(7))
    other = augmenter(tones(), np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_noise_is_mixed_at_the_requested_snr(snr_db: float) -> None:
    clean = tones(batch=16)
    augmenter = AudioAugmenter(
        noise_bank(), snr_db=(snr_db, snr_db), noise_p=1.0, gain_db=(0, 0), shift_max=0.0
    )
    noisy = augmenter(clean, np.random.default_rng(1))
    measured = power_db(clean) - power_db(noisy - clean)
    np.testing.assert_allclose(measured, snr_db, atol=0.05)


def test_noise_snr_stays_in_the_range() -> None:
    clean = tones(batch=32)
    augmenter = AudioAugmenter(
        noise_bank(), snr_db=(5, 15), noise_p=1.0, gain_db=(0, 0), shift_max=0.0
    )
    measured = power_db(clean) - power_db(augmenter(clean, np.random.default_rng(2)) - clean)
    assert np.all((measured > 4.95) & (measured < 15.05))
    assert measured.std() > 1.0, "SNRs should be drawn, not fixed"


def test_noise_probability_zero_and_one() -> None:
    clean = tones(batch=16)
    rng = np.random.default_rng(3)
    never = AudioAugmenter(noise_bank(), noise_p=0.0, gain_db=(0, 0), shift_max=0.0)
    np.testing.assert_array_equal(never(clean, rng), clean)
    always = AudioAugmenter(noise_bank(), noise_p=1.0, gain_db=(0, 0), shift_max=0.0)
    assert np.all(np.any(always(clean, rng) != clean, axis=1))


def test_gain_scales_within_the_range() -> None:
    clean = tones(batch=16)
    augmenter = AudioAugmenter(gain_db=(-6, 6), shift_max=0.0)
    out = augmenter(clean, np.random.default_rng(4))
    gains = power_db(out) - power_db(clean)
    assert np.all(np.abs(gains) <= 6.0 + 1e-3)
    ratio = out / np.where(clean == 0, 1, clean)
    assert np.allclose(ratio[:, 1:], ratio[:, 1:2], atol=1e-4), "one gain per example"


def test_circular_shift_rotates_and_zero_shift_fills() -> None:
    clean = np.tile(np.arange(1, 101, dtype=np.float32) / 100, (4, 1))
    rng_seed = 5
    circular = AudioAugmenter(gain_db=(0, 0), shift_max=0.2)(clean, np.random.default_rng(rng_seed))
    for row in circular:
        offset = int(np.flatnonzero(np.isclose(clean[0], row[0]))[0])
        np.testing.assert_allclose(row, np.roll(clean[0], -offset), atol=1e-6)
    zero = AudioAugmenter(gain_db=(0, 0), shift_max=0.2, shift_fill="zero")(
        clean, np.random.default_rng(rng_seed)
    )
    np.testing.assert_array_equal(zero[circular != zero], 0.0)
    assert np.any(zero == 0.0), "a shift by a non-zero amount should leave zeros"


def test_reverb_keeps_the_peak_and_changes_the_signal() -> None:
    clean = tones(batch=4)
    rir = np.concatenate([np.zeros(20), [1.0], 0.6 * np.exp(-np.arange(1500) / 200.0)])
    augmenter = AudioAugmenter(rirs=[rir], reverb_p=1.0, gain_db=(0, 0), shift_max=0.0)
    out = augmenter(clean, np.random.default_rng(6))
    np.testing.assert_allclose(np.abs(out).max(axis=1), np.abs(clean).max(axis=1), rtol=1e-5)
    assert not np.allclose(out, clean, atol=1e-3)
    assert abs(out[0, 0]) < 1e-3 and abs(out[0, 1]) > 1e-4, "aligned on the direct path"


def _spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.rfftfreq(x.shape[-1], 1 / 16000), np.abs(np.fft.rfft(x, axis=-1)) ** 2


def test_random_channel_band_limits_each_row_differently_and_keeps_the_peak() -> None:
    rng = np.random.default_rng(0)
    x = 0.2 * rng.standard_normal((64, 8000))
    y = random_channel(x.copy(), 16000, np.random.default_rng(1))
    assert y.shape == x.shape and np.all(np.isfinite(y))
    np.testing.assert_allclose(np.abs(y).max(axis=1), np.abs(x).max(axis=1), rtol=0.02)
    freqs, power = _spectrum(y)
    _, before = _spectrum(x)
    share = lambda p, sel: p[:, sel].sum(axis=1) / p.sum(axis=1)  # noqa: E731
    assert np.all(share(power, freqs < 40) < share(before, freqs < 40))  # every row: a low cut
    assert np.all(share(power, freqs > 7600) < share(before, freqs > 7600))  # and a high cut
    responses = power[:, 10:3000] / before[:, 10:3000]
    assert np.std(np.log(responses[:, 1000:1100].mean(axis=1))) > 0.2  # rows differ


def test_random_channel_is_seeded_and_applied_with_channel_p() -> None:
    x = (0.1 * np.random.default_rng(5).standard_normal((16, 4000))).astype(np.float32)
    a = random_channel(x.astype(np.float64), 16000, np.random.default_rng(3))
    b = random_channel(x.astype(np.float64), 16000, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    plain = AudioAugmenter(noise_p=0, reverb_p=0, gain_db=(0, 0), shift_max=0)
    assert np.array_equal(plain(x, np.random.default_rng(0)), x)  # channel_p defaults to 0
    every = AudioAugmenter(noise_p=0, reverb_p=0, gain_db=(0, 0), shift_max=0, channel_p=1.0)
    changed = every(x, np.random.default_rng(0))
    assert not np.any(np.all(np.isclose(changed, x, atol=1e-4), axis=1))
    with pytest.raises(ConfigError, match="channel_p"):
        AudioAugmenter(channel_p=1.5)


def test_audio_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="noise_p"):
        AudioAugmenter(noise_p=1.5)
    with pytest.raises(ConfigError, match="snr_db"):
        AudioAugmenter(snr_db=(20, 5))
    with pytest.raises(DataError, match="non-silent"):
        AudioAugmenter(noise=[np.zeros(100)])
    with pytest.raises(DataError, match=r"\(B, N\)"):
        AudioAugmenter()(np.zeros(100), np.random.default_rng(0))


# --- SpecAugment -------------------------------------------------------------------------------


def test_spec_augment_masks_bands_and_spans_with_the_example_mean() -> None:
    rng = np.random.default_rng(0)
    levels = np.arange(16)[:, None, None]
    features = (rng.standard_normal((16, 40, 98)) + levels).astype(np.float32)
    out = spec_augment(features, np.random.default_rng(1), freq_width=6, time_width=10)
    assert out.shape == features.shape
    assert out.dtype == np.float32
    changed = out != features
    means = features.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out[changed], np.broadcast_to(means, out.shape)[changed], atol=1e-5)
    assert changed.any(axis=(1, 2)).sum() >= 12, "most examples should get some mask"
    whole_rows = changed.all(axis=2).sum(axis=1)
    whole_cols = changed.all(axis=1).sum(axis=1)
    assert np.all(whole_rows <= 2 * 6)
    assert np.all(whole_cols <= 2 * 10)
    assert whole_rows.max() > 0 and whole_cols.max() > 0


def test_spec_augment_is_deterministic_and_zero_width_is_identity() -> None:
    features = np.random.default_rng(2).standard_normal((4, 20, 50)).astype(np.float32)
    np.testing.assert_array_equal(
        spec_augment(features, np.random.default_rng(3)),
        spec_augment(features, np.random.default_rng(3)),
    )
    untouched = spec_augment(features, np.random.default_rng(3), freq_width=0, time_width=0)
    np.testing.assert_array_equal(untouched, features)


# --- IMU ---------------------------------------------------------------------------------------


def test_rotations_are_proper_orthogonal() -> None:
    rng = np.random.default_rng(0)
    for rotations in (uniform_rotations(50, rng), bounded_rotations(50, np.deg2rad(30), rng)):
        identity = np.einsum("bij,bkj->bik", rotations, rotations)
        np.testing.assert_allclose(identity, np.broadcast_to(np.eye(3), identity.shape), atol=1e-9)
        np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-9)


def test_bounded_rotations_respect_the_angle() -> None:
    rotations = bounded_rotations(200, np.deg2rad(20), np.random.default_rng(1))
    angles = np.degrees(np.arccos(np.clip((np.trace(rotations, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() <= 20.0 + 1e-6
    assert angles.max() > 15.0


def test_uniform_rotations_have_no_preferred_direction() -> None:
    rotated = uniform_rotations(4000, np.random.default_rng(2)) @ np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(rotated.mean(axis=0), 0.0, atol=0.05)


def rotation_only() -> ImuAugmenter:
    return ImuAugmenter([ACC, GYRO], scale=(1.0, 1.0), jitter_std=0.0, time_warp=0.0)


def test_rotation_preserves_the_norm_of_each_triad() -> None:
    windows = imu_windows()
    out = rotation_only()(windows, np.random.default_rng(3))
    for triad in (ACC, GYRO):
        np.testing.assert_allclose(
            np.linalg.norm(out[:, :, triad], axis=2),
            np.linalg.norm(windows[:, :, triad], axis=2),
            rtol=1e-5,
        )
    assert not np.allclose(out, windows, atol=1e-3)


def test_acc_and_gyro_rotate_together() -> None:
    windows = imu_windows()
    out = rotation_only()(windows, np.random.default_rng(4)).astype(np.float64)
    for example in range(windows.shape[0]):
        acc_in = windows[example][:, ACC].astype(np.float64)
        rotation_t, *_ = np.linalg.lstsq(acc_in, out[example][:, ACC], rcond=None)
        gyro_in = windows[example][:, GYRO].astype(np.float64)
        np.testing.assert_allclose(gyro_in @ rotation_t, out[example][:, GYRO], atol=1e-4)
        np.testing.assert_allclose(np.linalg.det(rotation_t), 1.0, atol=1e-4)


def test_channels_outside_the_triads_are_untouched_by_rotation() -> None:
    windows = np.random.default_rng(5).standard_normal((3, 50, 7)).astype(np.float32)
    out = rotation_only()(windows, np.random.default_rng(6))
    np.testing.assert_array_equal(out[:, :, 6], windows[:, :, 6])


def test_triad_scale_gives_each_sensor_of_a_window_one_gain_in_its_range() -> None:
    windows = imu_windows()
    augment = ImuAugmenter(
        [ACC, GYRO],
        rotate=False,
        scale=(1.0, 1.0),
        jitter_std=0.0,
        time_warp=0.0,
        triad_scale=(0.5, 2.0),
    )
    out = augment(windows, np.random.default_rng(8)).astype(np.float64)
    gains = []
    for triad in (ACC, GYRO):
        ratio = out[:, :, list(triad)] / windows[:, :, list(triad)]
        np.testing.assert_allclose(ratio, ratio[:, :1, :1] * np.ones_like(ratio), rtol=1e-5)
        gains.append(ratio[:, 0, 0])
    assert np.all((np.concatenate(gains) >= 0.5) & (np.concatenate(gains) <= 2.0))
    assert not np.allclose(gains[0], gains[1])  # accelerometer and gyroscope apart
    assert np.ptp(gains[0]) > 0.3  # and per window


def test_imu_keeps_shape_dtype_and_is_deterministic() -> None:
    windows = imu_windows()
    augmenter = ImuAugmenter([ACC, GYRO])
    first = augmenter(windows, np.random.default_rng(7))
    assert first.shape == windows.shape
    assert first.dtype == np.float32
    np.testing.assert_array_equal(first, augmenter(windows, np.random.default_rng(7)))
    assert not np.array_equal(first, augmenter(windows, np.random.default_rng(8)))


def test_time_warp_keeps_the_ends_and_bends_the_middle() -> None:
    ramp = np.tile(np.linspace(0, 1, 200)[None, :, None], (8, 1, 6)).astype(np.float32)
    augmenter = ImuAugmenter([], rotate=False, scale=(1, 1), jitter_std=0.0, time_warp=0.2)
    out = augmenter(ramp, np.random.default_rng(9))
    np.testing.assert_allclose(out[:, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, -1], 1.0, atol=1e-6)
    assert np.all(np.diff(out[:, :, 0], axis=1) >= 0), "a time warp never reverses time"
    assert np.abs(out - ramp).max() > 0.01


def test_jitter_is_relative_to_channel_std() -> None:
    windows = imu_windows(batch=4, n=2000) * np.array([1, 1, 1, 100, 100, 100], np.float32)
    augmenter = ImuAugmenter([], rotate=False, scale=(1, 1), jitter_std=0.05, time_warp=0.0)
    added = augmenter(windows, np.random.default_rng(10)) - windows
    relative = added.std(axis=1) / windows.std(axis=1)
    np.testing.assert_allclose(relative, 0.05, rtol=0.15)


def test_imu_rejects_bad_triads() -> None:
    with pytest.raises(ConfigError, match="share"):
        ImuAugmenter([(0, 1, 2), (2, 3, 4)])
    with pytest.raises(ConfigError, match="triples"):
        ImuAugmenter([(0, 1)])  # type: ignore[list-item]
    with pytest.raises(DataError, match="channel 5"):
        ImuAugmenter([ACC, GYRO])(np.zeros((2, 10, 4)), np.random.default_rng(0))

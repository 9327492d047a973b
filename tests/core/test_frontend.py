"""Front-ends: librosa parity on real speech, state round trips, batching, the NaN/Inf policy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesiam.core.frontend import (
    FrontEnd,
    LogMelFrontEnd,
    LogMelParams,
    SensorFrontEnd,
    WindowFeatures,
    frontend_from_state,
    mel_filterbank,
)
from edgesiam.core.windowing import StreamWindower
from edgesiam.errors import ConfigError, DataError, ModelError

LIBROSA_LOG_TOLERANCE = 1e-3
"""Largest accepted |ours - librosa| in log units (natural log of mel power)."""


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 3 s of synthetic speech from espeak-ng, resampled from 22 050 Hz to 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not on PATH (make apt installs it)")
    path = Path(tmp_path_factory.mktemp("speech")) / "speech.wav"
    sentence = "The quick brown fox jumps over the lazy dog, and then it sleeps."
    subprocess.run(["espeak-ng", "-w", str(path), sentence], check=True, capture_output=True)
    audio, rate = sf.read(path, dtype="float32")
    return np.asarray(soxr.resample(audio, rate, 16000), dtype=np.float32)


def librosa_log_mel(y: np.ndarray) -> np.ndarray:
    """librosa's log-mel with the front-end's defaults.

    librosa (center=False) frames n_fft=512 samples and centres the 400-sample window in them, so
    its frame t reads samples [t*hop + 56, t*hop + 456). Padding y by 56 on both sides makes its
    frame t read exactly our frame t, [t*hop, t*hop + 400), with the same number of frames.
    """
    pad = (512 - 400) // 2
    mel = librosa.feature.melspectrogram(
        y=np.pad(y, pad),
        sr=16000,
        n_fft=512,
        hop_length=160,
        win_length=400,
        center=False,
        power=2.0,
        n_mels=40,
        fmin=20,
        fmax=8000,
    )
    return np.log(mel + 1e-6)


# --- parameters and filterbank ----------------------------------------------------------------


def test_filterbank_equals_librosa() -> None:
    params = LogMelParams()
    expected = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, fmin=20.0, fmax=8000.0)
    ours = mel_filterbank(params)
    assert ours.dtype == np.float32
    assert ours.shape == (40, 257)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [
        (8000, 256, 24, 0.0, 4000.0),
        (22050, 1024, 64, 50.0, 9000.0),
        (44100, 2048, 40, 0.0, 3000.0),
    ],
)
def test_filterbank_equals_librosa_for_other_parameters(
    sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> None:
    params = LogMelParams(
        sample_rate=sr, n_fft=n_fft, win_length=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax
    )
    expected = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    np.testing.assert_allclose(mel_filterbank(params), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"win_length": 600}, "win_length"),
        ({"fmax": 9000.0}, "half the sample rate"),
        ({"fmin": 4000.0, "fmax": 3000.0}, "fmin < fmax"),
        ({"hop_length": 0}, "hop_length"),
        ({"n_mels": -1}, "n_mels"),
        ({"log_offset": 0.0}, "log_offset"),
        ({"sample_rate": 16000.5}, "sample_rate"),
    ],
)
def test_invalid_params_raise_config_error(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LogMelParams(**changes)  # type: ignore[arg-type]


# --- log-mel ----------------------------------------------------------------------------------


def test_log_mel_matches_librosa_on_real_speech(speech: np.ndarray) -> None:
    assert speech.shape[0] > 16000, "espeak-ng should give more than a second of speech"
    assert np.sqrt(np.mean(np.square(speech))) > 0.01, "the speech should not be silent"
    front_end = LogMelFrontEnd()
    ours = front_end(speech)
    expected = librosa_log_mel(speech)
    assert ours.shape == expected.shape == front_end.feature_shape(speech.shape[0])
    assert np.max(np.abs(ours - expected)) <= LIBROSA_LOG_TOLERANCE


def test_n_frames_and_feature_shape() -> None:
    front_end = LogMelFrontEnd()
    assert front_end.n_frames(400) == 1
    assert front_end.n_frames(559) == 1
    assert front_end.n_frames(560) == 2
    assert front_end.feature_shape(16000) == (40, 98)
    with pytest.raises(DataError, match="win_length=400"):
        front_end.n_frames(399)
    with pytest.raises(DataError, match="win_length=400"):
        front_end(np.zeros(399, np.float32))


def test_batched_equals_per_window(speech: np.ndarray) -> None:
    front_end = LogMelFrontEnd(threads=2)
    windows = np.stack([speech[i * 4000 : i * 4000 + 16000] for i in range(12)])
    batched = front_end(windows)
    assert batched.shape == (12, 40, 98)
    assert batched.dtype == np.float32
    for window, features in zip(windows, batched, strict=True):
        np.testing.assert_allclose(front_end(window), features, rtol=0, atol=1e-5)


def test_thread_count_does_not_change_the_result() -> None:
    windows = np.random.default_rng(0).uniform(-0.5, 0.5, (40, 16000)).astype(np.float32)
    single = LogMelFrontEnd(threads=1)(windows)
    np.testing.assert_array_equal(LogMelFrontEnd(threads=3)(windows), single)


def test_long_window_is_split_into_blocks_without_seams() -> None:
    recording = np.random.default_rng(1).uniform(-0.5, 0.5, 160 * 2500).astype(np.float32)
    features = LogMelFrontEnd(threads=2)(recording)
    assert features.shape == (40, 2498)
    np.testing.assert_allclose(features, librosa_log_mel(recording), rtol=0, atol=1e-3)


def test_normalisation_is_fitted_per_mel_bin(speech: np.ndarray) -> None:
    front_end = LogMelFrontEnd()
    raw = front_end(np.stack([speech[:16000], speech[16000:32000]]))
    normalised_front_end = front_end.with_normalisation(raw)
    normalised = normalised_front_end(np.stack([speech[:16000], speech[16000:32000]]))
    assert front_end.mean is None, "with_normalisation must return a copy"
    np.testing.assert_allclose(normalised.mean(axis=(0, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(axis=(0, 2)), 1.0, atol=1e-3)


def test_normalisation_floors_the_std_of_a_constant_bin() -> None:
    front_end = LogMelFrontEnd()
    features = np.zeros((3, 40, 98), np.float32)
    fitted = front_end.with_normalisation(features)
    assert fitted.std is not None
    assert np.all(fitted.std > 0)
    with pytest.raises(DataError, match="40"):
        front_end.with_normalisation(np.zeros((3, 20, 98), np.float32))


def test_log_mel_state_round_trip_is_exact(speech: np.ndarray) -> None:
    params = LogMelParams(n_mels=32, fmin=60.0, fmax=7600.0, hop_length=200)
    front_end = LogMelFrontEnd(params)
    front_end = front_end.with_normalisation(front_end(speech[None, :16000]))
    state = front_end.state()
    assert str(state["kind"]) == "logmel"
    assert all(
        value.ndim == 0 for key, value in state.items() if key not in ("filterbank", "mean", "std")
    )
    rebuilt = frontend_from_state(state)
    assert isinstance(rebuilt, LogMelFrontEnd)
    assert rebuilt.params == params
    assert rebuilt.state().keys() == state.keys()
    for key, value in state.items():
        np.testing.assert_array_equal(rebuilt.state()[key], value)
    np.testing.assert_array_equal(rebuilt(speech[:16000]), front_end(speech[:16000]))


def test_state_survives_npz(tmp_path: Path) -> None:
    front_end = LogMelFrontEnd()
    np.savez(tmp_path / "state.npz", **front_end.state())
    with np.load(tmp_path / "state.npz", allow_pickle=False) as stored:
        rebuilt = frontend_from_state(dict(stored))
    assert isinstance(rebuilt, LogMelFrontEnd)
    assert rebuilt.params == front_end.params


def test_log_mel_replaces_non_finite_samples_by_silence(speech: np.ndarray) -> None:
    front_end = LogMelFrontEnd()
    clean = speech[:16000].copy()
    broken = clean.copy()
    broken[[100, 5000, 9000]] = [np.nan, np.inf, -np.inf]
    zeroed = clean.copy()
    zeroed[[100, 5000, 9000]] = 0.0
    features = front_end(broken)
    assert np.all(np.isfinite(features))
    np.testing.assert_array_equal(features, front_end(zeroed))
    assert np.all(np.isfinite(front_end(np.full((2, 16000), np.nan, np.float32))))


def test_log_mel_clips_samples_far_outside_any_audio_scale() -> None:
    rng = np.random.default_rng(0)
    huge = rng.standard_normal(16000).astype(np.float32) * np.float32(1e30)
    with np.errstate(all="raise"):  # no overflow anywhere on the way
        single, batch = LogMelFrontEnd()(huge), LogMelFrontEnd()(huge[None])
    assert np.all(np.isfinite(single)) and np.all(np.isfinite(batch))
    clipped = np.clip(huge, -1e9, 1e9)
    np.testing.assert_array_equal(single, LogMelFrontEnd()(clipped))
    np.testing.assert_array_equal(batch[0], single)


def test_log_mel_rejects_wrong_rank() -> None:
    with pytest.raises(DataError, match=r"\(B, N\)"):
        LogMelFrontEnd()(np.zeros((2, 2, 16000), np.float32))


def test_log_mel_rejects_a_mismatched_filterbank() -> None:
    with pytest.raises(ModelError, match="filterbank"):
        LogMelFrontEnd(filterbank=np.zeros((40, 100)))
    with pytest.raises(ModelError, match="both mean and std"):
        LogMelFrontEnd(mean=np.zeros(40))


# --- sensors ----------------------------------------------------------------------------------


def sensor_recordings(rng: np.random.Generator) -> list[np.ndarray]:
    offsets = np.array([0.0, 0.0, 9.81, 0.0, 0.0, 0.0])
    scales = np.array([1.0, 2.0, 0.5, 0.1, 0.1, 0.2])
    return [(offsets + scales * rng.standard_normal((n, 6))).astype(np.float32) for n in (300, 500)]


def test_sensor_fit_standardises_each_channel() -> None:
    recordings = sensor_recordings(np.random.default_rng(0))
    front_end = SensorFrontEnd.fit(recordings)
    features = front_end(np.concatenate(recordings))
    assert features.shape == (6, 800)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(features.std(axis=1), 1.0, atol=1e-4)


def test_sensor_fit_accepts_a_window_batch() -> None:
    windows = sensor_recordings(np.random.default_rng(1))[1][:400].reshape(4, 100, 6)
    from_batch = SensorFrontEnd.fit(windows)
    from_list = SensorFrontEnd.fit(list(windows))
    assert from_batch.mean is not None and from_list.mean is not None
    np.testing.assert_allclose(from_batch.mean, from_list.mean, rtol=1e-6)
    assert from_batch.feature_shape(100) == (6, 100)


def test_sensor_batch_transposes_and_matches_single_windows() -> None:
    front_end = SensorFrontEnd.fit(sensor_recordings(np.random.default_rng(2)))
    windows = sensor_recordings(np.random.default_rng(3))[1][:400].reshape(4, 100, 6)
    batched = front_end(windows)
    assert batched.shape == (4, 6, 100)
    for window, features in zip(windows, batched, strict=True):
        np.testing.assert_array_equal(front_end(window), features)


def test_sensor_clips_outliers() -> None:
    front_end = SensorFrontEnd(2, mean=[0.0, 0.0], std=[1.0, 1.0], clip=3.0)
    features = front_end(np.array([[100.0, -100.0], [1.0, 2.0]], np.float32))
    np.testing.assert_array_equal(features, [[3.0, 1.0], [-3.0, 2.0]])


def test_sensor_replaces_non_finite_samples_by_the_channel_mean() -> None:
    front_end = SensorFrontEnd(3, mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0])
    window = np.array([[np.nan, 2.0, np.inf], [3.0, -np.inf, 3.0]], np.float32)
    features = front_end(window)
    np.testing.assert_array_equal(features, [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])


def test_sensor_fit_ignores_non_finite_samples() -> None:
    data = np.array([[1.0, 10.0], [3.0, np.nan], [np.inf, 20.0]])
    front_end = SensorFrontEnd.fit([data])
    assert front_end.mean is not None and front_end.std is not None
    np.testing.assert_allclose(front_end.mean, [2.0, 15.0])
    np.testing.assert_allclose(front_end.std, [1.0, 5.0])  # of (1, 3) and (10, 20) alone


def test_sensor_wrong_channel_count_names_expected_and_got() -> None:
    front_end = SensorFrontEnd(6)
    with pytest.raises(DataError, match=r"expected 6, got 3"):
        front_end(np.zeros((50, 3), np.float32))
    with pytest.raises(DataError, match=r"\(N, C\)"):
        front_end(np.zeros(50, np.float32))


def test_sensor_state_round_trip_is_exact() -> None:
    front_end = SensorFrontEnd.fit(sensor_recordings(np.random.default_rng(4)), clip=5.0)
    state = front_end.state()
    assert str(state["kind"]) == "sensor"
    rebuilt = frontend_from_state(state)
    assert isinstance(rebuilt, SensorFrontEnd)
    assert (rebuilt.channels, rebuilt.clip) == (6, 5.0)
    for key, value in state.items():
        np.testing.assert_array_equal(rebuilt.state()[key], value)
    plain = frontend_from_state(SensorFrontEnd(4).state())
    assert isinstance(plain, SensorFrontEnd)
    assert plain.mean is None


def test_both_front_ends_satisfy_the_protocol() -> None:
    front_ends: list[FrontEnd] = [LogMelFrontEnd(), SensorFrontEnd(3)]
    assert [f.modality for f in front_ends] == ["audio", "sensor"]
    assert all(isinstance(f, FrontEnd) for f in front_ends)


def test_unknown_or_incomplete_state_raises_model_error() -> None:
    with pytest.raises(ModelError, match="unknown front-end kind 'mfcc'"):
        frontend_from_state({"kind": np.array("mfcc")})
    state = LogMelFrontEnd().state()
    del state["n_fft"]
    with pytest.raises(ModelError, match="n_fft"):
        frontend_from_state(state)
    with pytest.raises(ModelError, match="kind 'sensor'"):
        LogMelFrontEnd.from_state(SensorFrontEnd(3).state())


# --- features of a stream's windows (each frame computed once) ---------------------------------


class CountingFrontEnd(LogMelFrontEnd):
    """A log-mel front-end that counts the frames it computes."""

    computed = 0

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        out = super().__call__(windows)
        self.computed += out.shape[-1] * (out.shape[0] if out.ndim == 3 else 1)
        return out


def _stream_windows(
    signal: np.ndarray, window: int, hop: int, chunks: list[int]
) -> list[tuple[np.ndarray, int]]:
    windower, out, at = StreamWindower(window, hop), [], 0
    for size in [*chunks, signal.shape[0]]:
        windows, starts = windower.push(signal[at : at + size])
        out += list(zip(windows, (int(s) for s in starts), strict=True))
        at += size
        if at >= signal.shape[0]:
            break
    return out


@settings(max_examples=25, deadline=None)
@given(chunks=st.lists(st.integers(1, 9000), min_size=1, max_size=12))
def test_stream_features_equal_each_windows_own_features(
    speech: np.ndarray, chunks: list[int]
) -> None:
    fe = LogMelFrontEnd().with_normalisation(LogMelFrontEnd()(speech[None, :16000]))
    features = WindowFeatures(fe, 16000, 8000)
    assert features.streaming
    for window, start in _stream_windows(speech, 16000, 8000, chunks):
        got = features.features(window, start)
        np.testing.assert_allclose(got, fe(window[None]), rtol=0, atol=1e-5)


def test_stream_features_compute_each_frame_once(speech: np.ndarray) -> None:
    fe = CountingFrontEnd()
    features = WindowFeatures(fe, 16000, 8000)
    windows = _stream_windows(speech, 16000, 8000, [1600] * 40)
    assert len(windows) >= 3
    for window, start in windows:
        features.features(window, start)
    frames = fe.n_frames(16000)
    assert fe.computed == frames + (len(windows) - 1) * 8000 // 160
    assert fe.computed < len(windows) * frames


def test_stream_features_after_a_gap_or_a_reset_recompute_everything(speech: np.ndarray) -> None:
    fe = CountingFrontEnd()
    features = WindowFeatures(fe, 8000, 4000)
    a, b = speech[:8000], speech[20000:28000]
    features.features(a, 0)
    fe.computed = 0
    got = features.features(b, 20000)  # not overlapping the window before
    assert fe.computed == fe.n_frames(8000)
    np.testing.assert_allclose(got[0], fe(b), atol=1e-5)
    features.reset()
    fe.computed = 0
    features.features(speech[4000:12000], 4000)  # would overlap, but the cache was reset
    assert fe.computed == fe.n_frames(8000)
    fe.computed = 0
    got = features.features(speech[0:8000], 0)  # going backwards: nothing to reuse
    assert fe.computed == fe.n_frames(8000)
    np.testing.assert_allclose(got[0], fe(speech[:8000]), atol=1e-5)


def test_stream_features_with_non_finite_samples(speech: np.ndarray) -> None:
    signal = speech.copy()
    signal[9000:9100] = np.nan
    signal[15000] = np.inf
    fe = LogMelFrontEnd()
    features = WindowFeatures(fe, 16000, 8000)
    for window, start in _stream_windows(signal, 16000, 8000, [3000] * 20):
        got = features.features(window, start)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, fe(window[None]), atol=1e-5)


def test_stream_features_fall_back_to_whole_windows() -> None:
    # a window hop that is not a whole number of frame hops, and a sensor front-end
    fe = CountingFrontEnd()
    features = WindowFeatures(fe, 8000, 4100)
    assert not features.streaming
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    np.testing.assert_array_equal(features.features(x, 0), fe(x[None]))
    sensor = SensorFrontEnd(3)
    rows = np.random.default_rng(1).standard_normal((64, 3)).astype(np.float32)
    sensor_features = WindowFeatures(sensor, 64, 16)
    assert not sensor_features.streaming
    np.testing.assert_array_equal(sensor_features.features(rows, 0), sensor(rows[None]))


def test_stream_features_reject_a_window_of_the_wrong_length() -> None:
    features = WindowFeatures(LogMelFrontEnd(), 8000, 4000)
    with pytest.raises(DataError, match="8000 samples"):
        features.features(np.zeros(7999, np.float32), 0)

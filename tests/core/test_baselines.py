"""Baseline descriptors: shapes, DCT, NaN-safety, standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from edgesiam.core.baselines import (
    CHANNEL_STATISTICS,
    channel_statistics,
    dct_matrix,
    mfcc_statistics,
    standardise,
)
from edgesiam.core.frontend import LogMelFrontEnd, LogMelParams
from edgesiam.errors import DataError


@pytest.fixture(scope="module")
def frontend() -> LogMelFrontEnd:
    return LogMelFrontEnd(LogMelParams(sample_rate=16000, n_mels=40))


def test_dct_matrix_is_orthonormal_and_matches_scipy() -> None:
    d = dct_matrix(40, 40)
    np.testing.assert_allclose(d @ d.T, np.eye(40), atol=1e-12)
    x = np.random.default_rng(0).normal(size=40)
    np.testing.assert_allclose(d @ x, scipy.fft.dct(x, type=2, norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(dct_matrix(20, 40), d[:20])
    with pytest.raises(ValueError):
        dct_matrix(41, 40)


def test_mfcc_statistics_are_mean_and_std_of_cepstra() -> None:
    log_mel = np.random.default_rng(1).normal(size=(32, 9))
    features = mfcc_statistics(np.zeros(1000), lambda _: log_mel, n_mfcc=13)
    cepstra = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=0)[:13]
    np.testing.assert_allclose(features[:13], cepstra.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(features[13:], cepstra.std(axis=1), atol=1e-12)


def test_mfcc_statistics_with_the_log_mel_front_end(frontend: LogMelFrontEnd) -> None:
    rng = np.random.default_rng(2)
    audio = (0.1 * rng.normal(size=16000)).astype(np.float32)
    features = mfcc_statistics(audio, frontend)
    assert features.shape == (40,) and np.all(np.isfinite(features))
    assert not np.allclose(features, mfcc_statistics(audio * 0.01, frontend))


def test_mfcc_statistics_pads_a_short_recording_to_one_window(frontend: LogMelFrontEnd) -> None:
    seen: list[int] = []

    class Spy:
        params = frontend.params  # the window length is read from here

        def __call__(self, x: np.ndarray) -> np.ndarray:
            seen.append(x.size)
            return frontend(x)

    spy = Spy()
    features = mfcc_statistics(np.ones(100, dtype=np.float32), spy)
    assert seen == [frontend.params.win_length]
    assert features.shape == (40,) and np.all(np.isfinite(features))
    assert np.all(features[20:] == 0.0)  # one frame: no spread
    mfcc_statistics(np.ones(100, dtype=np.float32), spy, min_samples=800)
    assert seen[-1] == 800
    with pytest.raises(DataError):
        mfcc_statistics(np.zeros(0), frontend)


def test_channel_statistics_by_hand() -> None:
    x = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 4.0], [6.0, 0.0]])
    stats = channel_statistics(x).reshape(len(CHANNEL_STATISTICS), 2)
    np.testing.assert_allclose(stats[0], [3.0, 1.0])  # mean
    np.testing.assert_allclose(stats[1], [np.std([1, 3, 2, 6]), np.std([0, 0, 4, 0])])
    np.testing.assert_allclose(stats[2], [1.0, 0.0])  # min
    np.testing.assert_allclose(stats[3], [6.0, 4.0])  # max
    # MAD: medians 2.5 and 0; |dev| = [1.5 .5 .5 3.5] → 1.0, [0 0 4 0] → 0
    np.testing.assert_allclose(stats[4], [1.0, 0.0])
    # mean |first difference|: [2 1 4] → 7/3, [0 4 4] → 8/3
    np.testing.assert_allclose(stats[5], [7 / 3, 8 / 3])


def test_channel_statistics_are_nan_safe() -> None:
    x = np.array([[1.0, np.nan, 5.0], [np.nan, np.nan, np.inf], [3.0, np.nan, 7.0]])
    with np.errstate(all="raise"):
        stats = channel_statistics(x).reshape(len(CHANNEL_STATISTICS), 3)
    assert np.all(np.isfinite(stats))
    np.testing.assert_allclose(stats[:, 1], 0.0)  # all-NaN channel
    np.testing.assert_allclose(stats[0], [2.0, 0.0, 6.0])
    np.testing.assert_allclose(stats[5], [0.0, 0.0, 0.0])  # no finite consecutive pair


def test_channel_statistics_shapes() -> None:
    assert channel_statistics(np.zeros((50, 6))).shape == (36,)
    assert channel_statistics(np.arange(5.0)).shape == (6,)  # 1-D: one channel
    single = channel_statistics(np.array([[2.0, -1.0]]))
    np.testing.assert_allclose(single, [2, -1, 0, 0, 2, -1, 2, -1, 0, 0, 0, 0])
    with pytest.raises(DataError):
        channel_statistics(np.zeros((0, 3)))


def test_standardise() -> None:
    rng = np.random.default_rng(5)
    f = rng.normal(loc=[10.0, -3.0, 0.0], scale=[5.0, 0.1, 1.0], size=(30, 3))
    f[:, 2] = 7.0  # constant column
    f[4, 0] = np.nan
    z = standardise(f)
    assert np.all(np.isfinite(z))
    np.testing.assert_allclose(z[:, 1].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[:, 1].std(), 1.0)
    np.testing.assert_allclose(z[:, 2], 0.0)
    assert z[4, 0] == 0.0  # NaN → the mean
    ref = np.array([[0.0, 0.0, 0.0], [2.0, 4.0, 0.0]])
    np.testing.assert_allclose(standardise([[1.0, 6.0, 9.0]], reference=ref), [[0.0, 2.0, 0.0]])

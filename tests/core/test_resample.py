"""The streaming resampler: the same output for any chunking, and accurate against soxr."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesiam.core.resample import StreamResampler, resample
from edgesiam.errors import ConfigError, DataError

RATES = [8000, 16000, 22050, 44100, 48000]


def push_in_chunks(r: StreamResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < x.shape[0]:
        n = sizes[k % len(sizes)]
        out.append(r.push(x[i : i + n]))
        i, k = i + n, k + 1
    out.append(r.flush())
    return np.concatenate(out)


@settings(max_examples=40, deadline=None)
@given(
    rates=st.sampled_from(
        [(48000, 16000), (44100, 16000), (22050, 16000), (8000, 16000), (104, 50)]
    ),
    channels=st.sampled_from([None, 3]),
    n=st.integers(0, 6000),
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=12),
)
def test_any_chunking_gives_the_same_output(
    rates: tuple[int, int], channels: int | None, n: int, sizes: list[int]
) -> None:
    x = np.random.default_rng(n).standard_normal((n,) if channels is None else (n, channels))
    x = x.astype(np.float32)
    whole = resample(x, *rates)
    chunked = push_in_chunks(StreamResampler(*rates, channels), x, sizes)
    np.testing.assert_array_equal(chunked, whole)
    assert whole.shape[0] == -(-n * rates[1] // rates[0])


@pytest.mark.parametrize("rate", [48000, 44100])
def test_a_sine_keeps_its_frequency_and_amplitude_and_agrees_with_soxr(rate: int) -> None:
    t = np.arange(3 * rate) / rate
    x = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    y = push_in_chunks(StreamResampler(rate, 16000), x, [rate // 10])
    assert y.shape[0] == 48000
    inner = y[2000:-2000]  # away from the silent edges
    spectrum = np.abs(np.fft.rfft(inner * np.hanning(inner.size)))
    peak_hz = np.argmax(spectrum) * 16000 / inner.size  # bins of 0.36 Hz
    assert abs(peak_hz - 1000.0) < 1.0
    assert np.sqrt(2 * np.mean(inner**2)) == pytest.approx(0.5, rel=1e-3)
    reference = soxr.resample(x, rate, 16000, quality="VHQ")[2000:-2000]
    snr_db = 10 * np.log10(np.mean(reference**2) / np.mean((inner - reference) ** 2))
    assert snr_db > 80


@pytest.mark.parametrize("rate", [48000, 44100])
def test_the_passband_is_flat_and_what_would_alias_is_removed(rate: int) -> None:
    def level_db(freq: float) -> float:
        t = np.arange(2 * rate) / rate
        y = resample(np.sin(2 * np.pi * freq * t).astype(np.float32), rate, 16000)[3000:-3000]
        return float(20 * np.log10(np.sqrt(2 * np.mean(y**2)) + 1e-12))

    assert abs(level_db(3000.0)) < 0.01
    assert abs(level_db(7000.0)) < 0.1
    assert level_db(9000.0) < -70  # would fold onto 7 kHz
    assert level_db(12000.0) < -70


def test_a_constant_passes_unchanged_and_upsampling_works() -> None:
    y = resample(np.full(4800, 0.25, np.float32), 48000, 16000)
    np.testing.assert_allclose(y[100:-100], 0.25, rtol=1e-5)
    up = resample(np.sin(2 * np.pi * 500 * np.arange(8000) / 8000).astype(np.float32), 8000, 16000)
    expected = np.sin(2 * np.pi * 500 * np.arange(16000) / 16000)
    np.testing.assert_allclose(up[200:-200], expected[200:-200], atol=2e-3)


def test_multichannel_resamples_each_channel_alone() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9000, 2)).astype(np.float32)
    both = resample(x, 44100, 16000)
    np.testing.assert_allclose(both[:, 1], resample(x[:, 1], 44100, 16000), rtol=1e-6, atol=1e-7)


def test_bad_rates_and_chunks_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="from_rate"):
        StreamResampler(0, 16000)
    with pytest.raises(ConfigError, match="filter phases"):
        StreamResampler(16001, 16000 * 9973)
    with pytest.raises(DataError, match=r"\(n,\)"):
        StreamResampler(48000, 16000).push(np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        StreamResampler(48000, 16000, 2).push(np.zeros(4))

"""Streaming windowing: chunk-size invariance, equality with frame(), padding, the buffer bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesiam.core.windowing import StreamWindower, frame, frame_starts
from edgesiam.errors import ConfigError, DataError


def stream(n: int, channels: int | None = None, seed: int = 0) -> np.ndarray:
    shape = (n,) if channels is None else (n, channels)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def push_in_chunks(
    windower: StreamWindower, x: np.ndarray, sizes: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Push ``x`` in consecutive chunks of the given sizes (cycled); collect windows and starts."""
    first_windows, first_starts = windower.push(x[:0])
    windows, starts = [first_windows], [first_starts]
    position, index = 0, 0
    while position < x.shape[0]:
        size = sizes[index % len(sizes)]
        got_windows, got_starts = windower.push(x[position : position + size])
        assert windower.buffered < windower.window
        windows.append(got_windows)
        starts.append(got_starts)
        position += size
        index += 1
    return np.concatenate(windows), np.concatenate(starts)


def expected_windows(x: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference by plain slicing: every full window starting at a multiple of hop."""
    starts = np.arange(0, x.shape[0] - window + 1, hop, dtype=np.int64)
    return np.stack([x[s : s + window] for s in starts]), starts


GEOMETRIES = [(400, 160), (160, 160), (100, 250), (1, 1), (7, 3)]


@pytest.mark.parametrize(("window", "hop"), GEOMETRIES)
@pytest.mark.parametrize("channels", [None, 3])
def test_chunk_size_does_not_change_windows(window: int, hop: int, channels: int | None) -> None:
    x = stream(3001, channels)
    reference_windows, reference_starts = expected_windows(x, window, hop)
    for chunk in (1, 37, 160, 16000):
        windower = StreamWindower(window, hop, channels)
        windows, starts = push_in_chunks(windower, x, [chunk])
        assert windows.dtype == np.float32
        assert starts.dtype == np.int64
        np.testing.assert_array_equal(windows, reference_windows)
        np.testing.assert_array_equal(starts, reference_starts)
        assert windower.samples_seen == x.shape[0]


@pytest.mark.parametrize(("window", "hop"), GEOMETRIES)
@pytest.mark.parametrize("channels", [None, 2])
def test_frame_equals_the_stream(window: int, hop: int, channels: int | None) -> None:
    x = stream(2000, channels, seed=1)
    stream_windows, stream_starts = push_in_chunks(StreamWindower(window, hop, channels), x, [333])
    np.testing.assert_array_equal(frame(x, window, hop), stream_windows)
    np.testing.assert_array_equal(frame_starts(x.shape[0], window, hop), stream_starts)


def test_hop_larger_than_window_skips_samples() -> None:
    x = np.arange(30, dtype=np.float32)
    windows, starts = push_in_chunks(StreamWindower(4, 10), x, [3])
    np.testing.assert_array_equal(starts, [0, 10, 20])
    np.testing.assert_array_equal(windows[1], [10, 11, 12, 13])


def test_window_shapes() -> None:
    windows, starts = StreamWindower(100, 50, channels=6).push(stream(260, 6))
    assert windows.shape == (4, 100, 6)
    assert starts.tolist() == [0, 50, 100, 150]
    empty_windows, empty_starts = StreamWindower(100, 50).push(stream(10))
    assert empty_windows.shape == (0, 100)
    assert empty_starts.shape == (0,)


def test_buffer_stays_below_one_window() -> None:
    windower = StreamWindower(400, 160)
    for size in (399, 1, 5000, 3, 16000, 7):
        windower.push(stream(size))
        assert windower.buffered < 400
    assert windower.samples_seen == 399 + 1 + 5000 + 3 + 16000 + 7
    assert windower._buffer.shape == (400,)


def test_emitted_windows_do_not_alias_the_buffer() -> None:
    windower = StreamWindower(4, 2)
    first, _ = windower.push(np.arange(4, dtype=np.float32))
    windower.push(np.full(10, -1.0, np.float32))
    np.testing.assert_array_equal(first[0], [0, 1, 2, 3])


def test_reset_starts_a_new_stream() -> None:
    windower = StreamWindower(10, 5)
    windower.push(stream(23))
    windower.reset()
    assert (windower.samples_seen, windower.buffered) == (0, 0)
    _, starts = windower.push(stream(20))
    assert starts.tolist() == [0, 5, 10]


def test_short_recording_is_padded_to_one_window() -> None:
    x = np.ones(30, np.float32)
    windows = frame(x, 100, 50)
    assert windows.shape == (1, 100)
    np.testing.assert_array_equal(windows[0, :30], 1.0)
    np.testing.assert_array_equal(windows[0, 30:], 0.0)
    assert frame_starts(30, 100, 50).tolist() == [0]
    assert frame(np.ones((5, 3)), 8, 2).shape == (1, 8, 3)


def test_frame_drops_an_incomplete_tail() -> None:
    windows = frame(np.arange(25, dtype=np.float32), 10, 10)
    assert windows.shape == (2, 10)
    np.testing.assert_array_equal(frame_starts(25, 10, 10), [0, 10])


def test_wrong_chunk_shape_raises_data_error() -> None:
    with pytest.raises(DataError, match=r"\(n,\)"):
        StreamWindower(10, 5).push(np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"\(n, 3\)"):
        StreamWindower(10, 5, channels=3).push(np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"\(n, 3\)"):
        StreamWindower(10, 5, channels=3).push(np.zeros(4))
    with pytest.raises(DataError, match="at least one sample"):
        frame(np.zeros(0), 10, 5)


@pytest.mark.parametrize(
    ("window", "hop", "channels"), [(0, 1, None), (10, 0, None), (10, 5, 0), (10, -1, None)]
)
def test_invalid_geometry_raises_config_error(window: int, hop: int, channels: int | None) -> None:
    with pytest.raises(ConfigError):
        StreamWindower(window, hop, channels)


@settings(max_examples=60, deadline=None)
@given(
    window=st.integers(1, 64),
    hop=st.integers(1, 80),
    channels=st.sampled_from([None, 2]),
    n=st.integers(0, 400),
    sizes=st.lists(st.integers(0, 150), min_size=1, max_size=20).filter(any),
)
def test_any_chunk_split_gives_the_same_windows(
    window: int, hop: int, channels: int | None, n: int, sizes: list[int]
) -> None:
    x = stream(n, channels, seed=n)
    windows, starts = push_in_chunks(StreamWindower(window, hop, channels), x, sizes)
    whole_windows, whole_starts = StreamWindower(window, hop, channels).push(x)
    np.testing.assert_array_equal(windows, whole_windows)
    np.testing.assert_array_equal(starts, whole_starts)
    if n >= window:
        np.testing.assert_array_equal(windows, frame(x, window, hop))
        np.testing.assert_array_equal(starts, frame_starts(n, window, hop))
    else:
        assert windows.shape[0] == 0

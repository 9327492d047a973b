"""Cutting sample streams into fixed windows.

:class:`StreamWindower` does it for a live stream fed in chunks of any size; :func:`frame` does it
for a whole recording at once. Both yield the same windows at the same start samples, whatever the
chunking, so that what the device sees equals what evaluation measured.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from edgesiam.core.arrays import Float32Array, Int64Array
from edgesiam.errors import ConfigError, DataError

_EMPTY_STARTS: Final = np.zeros(0, dtype=np.int64)


def _check_geometry(window: int, hop: int, channels: int | None) -> None:
    for name, value in (("window", window), ("hop", hop)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"{name} must be a positive number of samples, got {value!r}")
    if channels is not None and (
        isinstance(channels, bool) or not isinstance(channels, int | np.integer) or channels < 1
    ):
        raise ConfigError(f"channels must be a positive integer or None, got {channels!r}")


def _sample_shape(channels: int | None) -> tuple[int, ...]:
    return () if channels is None else (channels,)


def _windows_of(data: Float32Array, window: int, hop: int, count: int) -> Float32Array:
    """The first ``count`` windows of ``data`` (samples along axis 0), as a new contiguous array."""
    views = np.lib.stride_tricks.sliding_window_view(data, window, axis=0)[::hop][:count]
    return np.ascontiguousarray(np.moveaxis(views, -1, 1), dtype=np.float32)


class StreamWindower:
    """Bounded, chunk-size-invariant windowing of a live stream.

    Windows of ``window`` samples start every ``hop`` samples, counted from the first sample pushed;
    when ``hop > window`` the samples between windows are skipped. Single-channel streams
    (``channels=None``) take chunks ``(n,)``; multichannel streams take ``(n, channels)``.

    Memory bound: between calls the windower keeps only the samples of the next, incomplete window,
    so :attr:`buffered` is always below ``window``; nothing else grows with the stream.
    """

    def __init__(self, window: int, hop: int, channels: int | None = None) -> None:
        _check_geometry(window, hop, channels)
        self.window = int(window)
        self.hop = int(hop)
        self.channels = None if channels is None else int(channels)
        self._buffer = np.zeros((self.window, *_sample_shape(self.channels)), dtype=np.float32)
        self.reset()

    def __repr__(self) -> str:
        return (
            f"StreamWindower(window={self.window}, hop={self.hop}, channels={self.channels}, "
            f"samples_seen={self._seen}, buffered={self._fill})"
        )

    @property
    def buffered(self) -> int:
        """Samples held for the next window (always fewer than ``window``)."""
        return self._fill

    @property
    def samples_seen(self) -> int:
        """Samples pushed since construction or the last :meth:`reset`."""
        return self._seen

    def reset(self) -> None:
        """Forget the stream: the next sample pushed is sample 0 again."""
        self._seen = 0
        self._fill = 0
        self._skip = 0
        self._next_start = 0

    def push(self, chunk: npt.ArrayLike) -> tuple[Float32Array, Int64Array]:
        """Add samples; return the windows they complete and those windows' start samples.

        Windows are ``(k, window)`` or ``(k, window, channels)`` float32 and starts ``(k,)`` int64,
        with ``k = 0`` when no window was completed.
        """
        samples = self._validated(chunk)
        self._seen += samples.shape[0]
        samples = self._drop_skipped(samples)
        if self._fill + samples.shape[0] < self.window:
            self._append(samples)
            return self._no_windows(), _EMPTY_STARTS.copy()
        data = np.concatenate([self._buffer[: self._fill], samples])
        count = 1 + (data.shape[0] - self.window) // self.hop
        windows = _windows_of(data, self.window, self.hop, count)
        starts = self._next_start + self.hop * np.arange(count, dtype=np.int64)
        self._keep_tail(data, consumed=count * self.hop)
        return windows, starts

    def _validated(self, chunk: npt.ArrayLike) -> Float32Array:
        samples = np.asarray(chunk, dtype=np.float32)
        expected = _sample_shape(self.channels)
        if samples.ndim != 1 + len(expected) or samples.shape[1:] != expected:
            wanted = "(n,)" if self.channels is None else f"(n, {self.channels})"
            raise DataError(f"stream chunk must have shape {wanted}, got {samples.shape}")
        return samples

    def _drop_skipped(self, samples: Float32Array) -> Float32Array:
        """Discard the samples that fall between two windows when ``hop > window``."""
        dropped = min(self._skip, samples.shape[0])
        self._skip -= dropped
        return samples[dropped:]

    def _append(self, samples: Float32Array) -> None:
        self._buffer[self._fill : self._fill + samples.shape[0]] = samples
        self._fill += samples.shape[0]

    def _keep_tail(self, data: Float32Array, consumed: int) -> None:
        """After emitting windows, keep what the next window needs (or note what to skip)."""
        self._next_start += consumed
        if consumed <= data.shape[0]:
            tail = data[consumed:]
            self._buffer[: tail.shape[0]] = tail
            self._fill = tail.shape[0]
        else:
            self._fill = 0
            self._skip = consumed - data.shape[0]

    def _no_windows(self) -> Float32Array:
        return np.zeros((0, self.window, *_sample_shape(self.channels)), dtype=np.float32)


def frame_starts(n_samples: int, window: int, hop: int) -> Int64Array:
    """Start samples of the windows :func:`frame` cuts from a recording of ``n_samples`` samples."""
    _check_geometry(window, hop, None)
    if n_samples < 1:
        raise DataError(f"a recording needs at least one sample, got {n_samples}")
    count = 1 if n_samples < window else 1 + (n_samples - window) // hop
    return hop * np.arange(count, dtype=np.int64)


def frame(x: npt.ArrayLike, window: int, hop: int) -> Float32Array:
    """All full windows of a whole recording ``(n,)`` or ``(n, C)`` → ``(k, window[, C])`` float32.

    Identical to what :class:`StreamWindower` yields for the same stream. A recording shorter than
    one window is zero-padded at the end to exactly one window (docs/ARCHITECTURE.md, contract 3), so every recording has
    an embedding.
    """
    samples = np.asarray(x, dtype=np.float32)
    if samples.ndim not in (1, 2):
        raise DataError(f"a recording must have shape (n,) or (n, C), got {samples.shape}")
    starts = frame_starts(samples.shape[0], window, hop)
    if samples.shape[0] < window:
        padding = [(0, window - samples.shape[0])] + [(0, 0)] * (samples.ndim - 1)
        samples = np.pad(samples, padding)
    return _windows_of(samples, window, hop, starts.shape[0])

"""Front-ends: raw windows → features ``(C_in, T)`` for the encoder.

One implementation runs in training, evaluation and on the device, so it depends on numpy alone and
carries its whole state (parameters, filterbank, normalisation statistics) as a flat
``dict[str, np.ndarray]``: the device needs neither librosa nor the training data.

Non-finite samples (NaN, ±Inf from a glitching sensor or driver) never raise here: a live stream
must keep running. Each front-end documents what it replaces them with.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from edgesiam.core.arrays import Float32Array, Float64Array
from edgesiam.errors import ConfigError, DataError, ModelError

State = dict[str, np.ndarray]

LOGMEL_STD_FLOOR: Final = 1e-2
"""Smallest per-bin std (log units) used for normalisation, so that a bin that was constant in the
fitting data (e.g. empty above a band limit) cannot blow up later inputs."""

SENSOR_STD_FLOOR: Final = 1e-6
"""Smallest per-channel std used for normalisation; the clip bounds what a flat channel yields."""

SAMPLE_LIMIT: Final = np.float32(1e9)
"""Audio samples beyond ±1e9 (far outside any audio scale: ±1 for float audio, ±32768 for 16-bit
integers) are clipped to it, so that a frame's power spectrum stays finite in float32."""

_BLOCK_FRAMES: Final = 512
"""Frames per FFT task: keeps one block's spectra in cache and gives threads equal shares."""

_CHUNK_FRAMES: Final = 8192
"""Frames whose power spectra are held at once (8 MB at n_fft=512): bounds memory on long input."""


@dataclass(frozen=True)
class LogMelParams:
    """Parameters of the log-mel front-end (the same meaning as librosa's arguments)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 8000.0
    log_offset: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise ConfigError(f"log-mel {name} must be a positive integer, got {value!r}")
        if self.win_length > self.n_fft:
            raise ConfigError(
                f"log-mel win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})"
            )
        if not 0.0 <= self.fmin < self.fmax:
            raise ConfigError(
                f"log-mel needs 0 <= fmin < fmax, got fmin={self.fmin}, fmax={self.fmax}"
            )
        nyquist = self.sample_rate / 2
        if self.fmax > nyquist:
            raise ConfigError(
                f"log-mel fmax ({self.fmax} Hz) must not exceed half the sample rate ({nyquist} Hz)"
            )
        if not self.log_offset > 0.0:
            raise ConfigError(f"log-mel log_offset must be positive, got {self.log_offset}")


# --- mel scale (Slaney, as librosa with htk=False) ---------------------------------------------

_MEL_F_SP: Final = 200.0 / 3.0
_MEL_MIN_LOG_HZ: Final = 1000.0
_MEL_MIN_LOG_MEL: Final = _MEL_MIN_LOG_HZ / _MEL_F_SP
_MEL_LOG_STEP: Final = float(np.log(6.4) / 27.0)


def hz_to_mel(hz: npt.ArrayLike) -> Float64Array:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(hz, dtype=np.float64)
    linear = f / _MEL_F_SP
    above = f >= _MEL_MIN_LOG_HZ
    safe = np.where(above, f, _MEL_MIN_LOG_HZ)
    log_part = _MEL_MIN_LOG_MEL + np.log(safe / _MEL_MIN_LOG_HZ) / _MEL_LOG_STEP
    return np.where(above, log_part, linear)


def mel_to_hz(mels: npt.ArrayLike) -> Float64Array:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    linear = _MEL_F_SP * m
    log_part = _MEL_MIN_LOG_HZ * np.exp(_MEL_LOG_STEP * (m - _MEL_MIN_LOG_MEL))
    return np.where(m >= _MEL_MIN_LOG_MEL, log_part, linear)


def mel_filterbank(params: LogMelParams) -> Float32Array:
    """Triangular mel filters ``(n_mels, n_fft // 2 + 1)`` with Slaney area normalisation.

    Numerically the filterbank of ``librosa.filters.mel`` with its defaults (htk=False,
    norm='slaney').
    """
    fft_freqs = np.fft.rfftfreq(params.n_fft, d=1.0 / params.sample_rate)
    mel_edges = np.linspace(hz_to_mel(params.fmin), hz_to_mel(params.fmax), params.n_mels + 2)
    hz_edges = mel_to_hz(mel_edges)
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    area_norm = 2.0 / (hz_edges[2:] - hz_edges[:-2])
    return (weights * area_norm[:, None]).astype(np.float32)


def periodic_hann(length: int) -> Float64Array:
    """The periodic Hann window (scipy's ``get_window('hann', length)``, librosa's STFT window)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


# --- the front-end protocol --------------------------------------------------------------------


@runtime_checkable
class FrontEnd(Protocol):
    """What the encoder, the exporter and the device runtime need from a front-end."""

    @property
    def modality(self) -> str:
        """``"audio"`` or ``"sensor"``."""
        ...

    def __call__(self, windows: npt.ArrayLike) -> Float32Array:
        """Raw windows → features; one window or a batch."""
        ...

    def feature_shape(self, window_samples: int) -> tuple[int, int]:
        """``(C_in, T)`` of the features of one window of ``window_samples`` samples."""
        ...

    def state(self) -> State:
        """Everything needed to rebuild this front-end, as flat arrays."""
        ...


# --- log-mel -----------------------------------------------------------------------------------


class LogMelFrontEnd:
    """Log-mel spectrogram of audio windows, optionally normalised per mel bin.

    Frames of ``win_length`` samples start every ``hop_length`` samples with no centring or
    padding (librosa's ``center=False``). Each frame is multiplied by a periodic Hann window and
    zero-padded to ``n_fft``; librosa centres the window inside ``n_fft`` while this pads at the
    end, which differs only by a circular shift and so gives the same power spectrum. Then
    ``|rfft|²``, the mel filterbank, ``log(mel + log_offset)``, and ``(x - mean) / std`` when
    statistics are set.

    NaN/Inf policy: non-finite samples are replaced by 0 (silence) before framing, and finite ones
    beyond ±:data:`SAMPLE_LIMIT` are clipped to it, so a glitch costs the frames that contain it some
    energy but never produces non-finite features.
    """

    modality: Final = "audio"

    def __init__(
        self,
        params: LogMelParams | None = None,
        filterbank: npt.ArrayLike | None = None,
        mean: npt.ArrayLike | None = None,
        std: npt.ArrayLike | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        """Without a filterbank, compute it from ``params``; ``mean``/``std`` are per-mel-bin.

        ``threads`` bounds the worker threads for large batches (None: up to 4, by CPU count); it
        changes speed only, never the result, and is not part of the state.
        """
        self.params = params if params is not None else LogMelParams()
        n_bins = self.params.n_fft // 2 + 1
        if filterbank is None:
            self.filterbank = mel_filterbank(self.params)
        else:
            self.filterbank = _as_float32(filterbank, (self.params.n_mels, n_bins), "filterbank")
        self.mean, self.std = _normalisation_pair(mean, std, self.params.n_mels, "mel bin")
        self.threads = _resolve_threads(threads)
        self._window = periodic_hann(self.params.win_length)
        self._filterbank_t = np.ascontiguousarray(self.filterbank.T)

    def __repr__(self) -> str:
        normalised = self.mean is not None
        return f"LogMelFrontEnd({self.params}, normalised={normalised})"

    def n_frames(self, n_samples: int) -> int:
        """Frames in a window of ``n_samples`` samples (no padding)."""
        p = self.params
        if n_samples < p.win_length:
            raise DataError(
                f"a log-mel window needs at least win_length={p.win_length} samples, "
                f"got {n_samples}"
            )
        return 1 + (n_samples - p.win_length) // p.hop_length

    def feature_shape(self, window_samples: int) -> tuple[int, int]:
        """``(n_mels, n_frames)`` for a window of ``window_samples`` samples."""
        return self.params.n_mels, self.n_frames(window_samples)

    def __call__(self, windows: npt.ArrayLike) -> Float32Array:
        """``(N,)`` → ``(n_mels, T)``; ``(B, N)`` → ``(B, n_mels, T)``; float32."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim not in (1, 2):
            raise DataError(f"log-mel input must be (N,) or (B, N), got shape {x.shape}")
        if x.ndim == 1 and self.n_frames(x.shape[0]) <= _BLOCK_FRAMES:
            return self._log_mel_one(_finite_or_zero(x))
        batch = _finite_or_zero(x.reshape(-1, x.shape[-1]))
        features = self._log_mel_batch(batch)
        return features[0] if x.ndim == 1 else features

    def _log_mel_one(self, x: Float32Array) -> Float32Array:
        """Log-mel ``(n_mels, T)`` of one short finite signal: the steps of the batch path (the
        same arithmetic, so the same result) with as few calls as possible, for a live stream,
        which asks for one window (or the new frames of one) at a time."""
        p = self.params
        n = self.n_frames(x.shape[0])
        x = np.ascontiguousarray(x)
        step = x.strides[0]
        frames = np.ndarray(
            (n, p.win_length), np.float32, buffer=x, strides=(p.hop_length * step, step)
        )
        padded = np.zeros((n, p.n_fft))
        np.multiply(frames, self._window, out=padded[:, : p.win_length])
        spectrum = np.fft.rfft(padded)
        power = np.empty((n, p.n_fft // 2 + 1), dtype=np.float32)
        np.add(np.square(spectrum.real), np.square(spectrum.imag), out=power, casting="same_kind")
        return np.ascontiguousarray(self._log_mel(power).T)

    def with_normalisation(self, features: npt.ArrayLike) -> LogMelFrontEnd:
        """A copy normalised with per-bin mean/std of unnormalised ``(B, n_mels, T)`` features."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 3 or f.shape[1] != self.params.n_mels or f.shape[0] * f.shape[2] == 0:
            raise DataError(
                f"normalisation statistics need features (B, {self.params.n_mels}, T) with "
                f"B, T >= 1, got shape {f.shape}"
            )
        mean = f.mean(axis=(0, 2))
        std = np.maximum(f.std(axis=(0, 2)), LOGMEL_STD_FLOOR)
        return LogMelFrontEnd(self.params, self.filterbank, mean, std, threads=self.threads)

    def state(self) -> State:
        """Parameters as 0-d arrays, ``kind="logmel"``, the filterbank and any statistics."""
        state: State = {"kind": np.array("logmel")}
        for field in dataclasses.fields(self.params):
            state[field.name] = np.array(getattr(self.params, field.name))
        state["filterbank"] = self.filterbank.copy()
        return state | _statistics(self.mean, self.std)

    @classmethod
    def from_state(cls, state: State) -> LogMelFrontEnd:
        """Rebuild a front-end saved by :meth:`state`."""
        _check_kind(state, "logmel")
        try:
            params = LogMelParams(
                sample_rate=int(_require(state, "sample_rate").item()),
                n_fft=int(_require(state, "n_fft").item()),
                win_length=int(_require(state, "win_length").item()),
                hop_length=int(_require(state, "hop_length").item()),
                n_mels=int(_require(state, "n_mels").item()),
                fmin=float(_require(state, "fmin").item()),
                fmax=float(_require(state, "fmax").item()),
                log_offset=float(_require(state, "log_offset").item()),
            )
        except ConfigError as exc:
            raise ModelError(f"front-end state holds invalid log-mel parameters: {exc}") from exc
        return cls(
            params,
            filterbank=_require(state, "filterbank"),
            mean=state.get("mean"),
            std=state.get("std"),
        )

    def _log_mel_batch(self, batch: Float32Array) -> Float32Array:
        """Log-mel of ``(B, N)`` finite windows, a chunk of frames at a time.

        Within a chunk, worker threads compute the power spectra of blocks of frames (numpy's FFT
        releases the GIL); the mel projection of the whole chunk then runs in this thread, so that
        BLAS is never entered from several threads at once, which serialises and spins.
        """
        p = self.params
        n_windows, n_frames = batch.shape[0], self.n_frames(batch.shape[1])
        # (B, T, win_length) read-only views of the frames: frame t of window b starts at sample
        # t * hop_length of row b (the n_frames bound keeps every view inside its row)
        step = batch.strides[1]
        frames = np.lib.stride_tricks.as_strided(
            batch,
            shape=(n_windows, n_frames, p.win_length),
            strides=(batch.strides[0], p.hop_length * step, step),
            writeable=False,
        )
        out = np.empty((n_windows, p.n_mels, n_frames), dtype=np.float32)
        use_threads = self.threads > 1 and n_windows * n_frames > _BLOCK_FRAMES
        pool = ThreadPoolExecutor(self.threads) if use_threads else None
        try:
            for rows, cols in _frame_blocks(n_windows, n_frames, _CHUNK_FRAMES):
                power = self._power_spectra(frames[rows, cols], pool)
                out[rows, :, cols] = self._log_mel(power).transpose(0, 2, 1)
        finally:
            if pool is not None:
                pool.shutdown()
        return out

    def _power_spectra(self, frames: Float32Array, pool: ThreadPoolExecutor | None) -> Float32Array:
        """``(b, t, win_length)`` frames → ``(b, t, n_fft // 2 + 1)`` power spectra, float32.

        The FFT runs in float64, which numpy computes no slower than float32, and more precisely.
        """
        n_fft, win_length = self.params.n_fft, self.params.win_length
        power = np.empty((*frames.shape[:2], n_fft // 2 + 1), dtype=np.float32)

        def fill(block: tuple[slice, slice]) -> None:
            # windowed frames written into a zero-padded buffer: the same input as rfft(n=n_fft)
            # would pad to, without its extra copy
            part = frames[block]
            padded = np.zeros((*part.shape[:2], n_fft))
            np.multiply(part, self._window, out=padded[..., :win_length])
            spectrum = np.fft.rfft(padded)
            squares = (np.square(spectrum.real), np.square(spectrum.imag))
            np.add(*squares, out=power[block], casting="same_kind")

        blocks = list(_frame_blocks(frames.shape[0], frames.shape[1], _BLOCK_FRAMES))
        if pool is None or len(blocks) == 1:
            for block in blocks:
                fill(block)
        else:
            list(pool.map(fill, blocks))
        return power

    def _log_mel(self, power: Float32Array) -> Float32Array:
        """Power spectra ``(..., n_fft // 2 + 1)`` → log-mel ``(..., n_mels)``, normalised if set."""
        log_mel: Float32Array = power @ self._filterbank_t
        log_mel += np.float32(self.params.log_offset)
        np.log(log_mel, out=log_mel)
        if self.mean is not None and self.std is not None:
            log_mel -= self.mean
            log_mel /= self.std
        return log_mel


class WindowFeatures:
    """Features of the consecutive windows of one stream, each log-mel frame computed once.

    Windows that overlap (hop < window) share frames: with 1 s windows every 0.5 s, half of each
    window's frames were already computed for the window before. When the window hop is a whole
    number of frame hops, :meth:`features` reuses those frames and computes only the new ones,
    from the window's own samples, so it needs no buffer of its own; otherwise (or for a sensor
    front-end) it calls the front-end on the whole window. Either way the result is the front-end's
    result for that window: every frame is computed the same way, from the same samples.

    ``start`` is the window's first sample in the stream; a start that does not follow the previous
    window (a gap after dropped samples, a new stream) simply finds nothing to reuse.
    """

    def __init__(self, frontend: FrontEnd, window: int, hop: int) -> None:
        self.frontend = frontend
        self.window = int(window)
        self.frame_hop = 0
        if isinstance(frontend, LogMelFrontEnd) and hop % frontend.params.hop_length == 0:
            self.frame_hop = frontend.params.hop_length
            self.frames = frontend.n_frames(self.window)
        self.reset()

    @property
    def streaming(self) -> bool:
        """Whether overlapping frames are reused (log-mel, window hop a multiple of frame hop)."""
        return self.frame_hop > 0

    def reset(self) -> None:
        """Forget the cached frames (a new stream, or samples were dropped)."""
        self._cached: Float32Array | None = None
        self._start = 0

    def features(self, window: npt.ArrayLike, start: int) -> Float32Array:
        """Features ``(1, C_in, T)`` of the window of samples ``[start, start + window)``."""
        x = np.asarray(window, dtype=np.float32)
        if not self.streaming:
            return self.frontend(x[None])
        if x.shape != (self.window,):
            raise DataError(f"expected a window of {self.window} samples, got shape {x.shape}")
        cached, offset = self._cached, start - self._start
        reuse = 0
        if cached is not None and offset >= 0 and offset % self.frame_hop == 0:
            reuse = max(0, self.frames - offset // self.frame_hop)
        if cached is not None and reuse:
            new = self.frontend(x[reuse * self.frame_hop :])
            out = np.concatenate((cached[:, self.frames - reuse :], new), axis=1)
        else:
            out = self.frontend(x)
        self._cached, self._start = out, int(start)
        return out[None]


def _frame_blocks(
    n_windows: int, n_frames: int, block_frames: int
) -> Iterator[tuple[slice, slice]]:
    """Split the (window, frame) grid into blocks of about ``block_frames`` frames: groups of whole
    windows when windows are short, frame ranges of one window when a window is long."""
    if n_frames >= block_frames:
        for row in range(n_windows):
            for start in range(0, n_frames, block_frames):
                yield slice(row, row + 1), slice(start, min(start + block_frames, n_frames))
    else:
        per_block = block_frames // n_frames
        for row in range(0, n_windows, per_block):
            yield slice(row, min(row + per_block, n_windows)), slice(0, n_frames)


# --- sensors -----------------------------------------------------------------------------------


class SensorFrontEnd:
    """Per-channel standardisation of multichannel sensor windows, clipped to ``±clip``.

    ``(N, C)`` → ``(C, N)`` and ``(B, N, C)`` → ``(B, C, N)``, float32. Without statistics the
    samples are only transposed and clipped.

    NaN/Inf policy: a non-finite sample is replaced by its channel's mean, i.e. 0 after
    standardisation, so one bad reading neither crashes the stream nor dominates the window.
    """

    modality: Final = "sensor"

    def __init__(
        self,
        channels: int,
        mean: npt.ArrayLike | None = None,
        std: npt.ArrayLike | None = None,
        clip: float = 8.0,
    ) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int | np.integer) or channels < 1:
            raise ConfigError(f"sensor channels must be a positive integer, got {channels!r}")
        if not clip > 0.0 or not np.isfinite(clip):
            raise ConfigError(f"sensor clip must be a positive finite number, got {clip!r}")
        self.channels = int(channels)
        self.clip = float(clip)
        self.mean, self.std = _normalisation_pair(mean, std, self.channels, "channel")

    def __repr__(self) -> str:
        normalised = self.mean is not None
        return (
            f"SensorFrontEnd(channels={self.channels}, clip={self.clip}, normalised={normalised})"
        )

    @classmethod
    def fit(
        cls, windows: npt.ArrayLike | Sequence[npt.ArrayLike], clip: float = 8.0
    ) -> SensorFrontEnd:
        """Fit per-channel mean/std on ``(B, N, C)`` windows or a list of ``(N, C)`` recordings.

        Non-finite samples are left out of the statistics.
        """
        samples = _stack_samples(windows)
        finite = np.isfinite(samples)
        counts = finite.sum(axis=0)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise DataError(f"sensor channels {empty.tolist()} have no finite samples to fit on")
        values = np.where(finite, samples, 0.0)
        mean = values.sum(axis=0) / counts
        centred = np.where(finite, samples - mean, 0.0)
        std = np.sqrt(np.square(centred).sum(axis=0) / counts)
        return cls(samples.shape[1], mean, np.maximum(std, SENSOR_STD_FLOOR), clip)

    def feature_shape(self, window_samples: int) -> tuple[int, int]:
        """``(channels, window_samples)``."""
        if window_samples < 1:
            raise DataError(f"a sensor window needs at least 1 sample, got {window_samples}")
        return self.channels, window_samples

    def __call__(self, windows: npt.ArrayLike) -> Float32Array:
        """``(N, C)`` → ``(C, N)``; ``(B, N, C)`` → ``(B, C, N)``; float32."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim not in (2, 3):
            raise DataError(f"sensor input must be (N, C) or (B, N, C), got shape {x.shape}")
        if x.shape[-1] != self.channels:
            raise DataError(
                f"sensor input has the wrong number of channels: expected {self.channels}, "
                f"got {x.shape[-1]} (shape {x.shape})"
            )
        mean = self.mean if self.mean is not None else np.zeros(self.channels, np.float32)
        x = np.where(np.isfinite(x), x, mean)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        x = np.clip(x, -self.clip, self.clip).astype(np.float32, copy=False)
        return np.ascontiguousarray(np.swapaxes(x, -1, -2))

    def state(self) -> State:
        """``kind="sensor"``, channels and clip as 0-d arrays, and any statistics."""
        state: State = {
            "kind": np.array("sensor"),
            "channels": np.array(self.channels),
            "clip": np.array(self.clip),
        }
        return state | _statistics(self.mean, self.std)

    @classmethod
    def from_state(cls, state: State) -> SensorFrontEnd:
        """Rebuild a front-end saved by :meth:`state`."""
        _check_kind(state, "sensor")
        try:
            return cls(
                int(_require(state, "channels").item()),
                mean=state.get("mean"),
                std=state.get("std"),
                clip=float(_require(state, "clip").item()),
            )
        except ConfigError as exc:
            raise ModelError(f"front-end state holds invalid sensor parameters: {exc}") from exc


def _stack_samples(windows: npt.ArrayLike | Sequence[npt.ArrayLike]) -> Float64Array:
    """All samples of ``(B, N, C)`` windows or a list of ``(N, C)`` recordings as ``(S, C)``."""
    if isinstance(windows, np.ndarray):
        parts = [windows.reshape(-1, windows.shape[-1])] if windows.ndim == 3 else [windows]
    elif isinstance(windows, Sequence) and not isinstance(windows, str | bytes):
        parts = [np.asarray(w) for w in windows]
    else:
        parts = [np.asarray(windows)]
    if not parts or any(p.ndim != 2 for p in parts):
        raise DataError("sensor statistics need (B, N, C) windows or a list of (N, C) recordings")
    widths = {p.shape[1] for p in parts}
    if len(widths) != 1:
        raise DataError(f"sensor recordings disagree on the channel count: {sorted(widths)}")
    samples = np.concatenate(parts).astype(np.float64)
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        raise DataError(
            f"sensor statistics need at least one sample and channel, got {samples.shape}"
        )
    return samples


# --- state helpers -----------------------------------------------------------------------------


def frontend_from_state(state: State) -> FrontEnd:
    """Rebuild whichever front-end ``state`` describes (dispatch on its ``kind``)."""
    kind = str(_require(state, "kind").item())
    if kind == "logmel":
        return LogMelFrontEnd.from_state(state)
    if kind == "sensor":
        return SensorFrontEnd.from_state(state)
    raise ModelError(f"unknown front-end kind {kind!r}; expected 'logmel' or 'sensor'")


def _require(state: State, key: str) -> np.ndarray:
    if key not in state:
        raise ModelError(f"front-end state lacks {key!r} (has: {sorted(state)})")
    return np.asarray(state[key])


def _statistics(mean: Float32Array | None, std: Float32Array | None) -> State:
    """A front-end's normalisation statistics for its state (none when it has none)."""
    if mean is None or std is None:
        return {}
    return {"mean": mean.copy(), "std": std.copy()}


def _check_kind(state: State, expected: str) -> None:
    kind = str(_require(state, "kind").item())
    if kind != expected:
        raise ModelError(f"front-end state is of kind {kind!r}, expected {expected!r}")


def _as_float32(values: npt.ArrayLike, shape: tuple[int, ...], name: str) -> Float32Array:
    array = np.array(values, dtype=np.float32)
    if array.shape != shape:
        raise ModelError(f"front-end {name} has shape {array.shape}, expected {shape}")
    if not np.all(np.isfinite(array)):
        raise ModelError(f"front-end {name} contains non-finite values")
    return array


def _normalisation_pair(
    mean: npt.ArrayLike | None, std: npt.ArrayLike | None, size: int, unit: str
) -> tuple[Float32Array | None, Float32Array | None]:
    """Validate optional per-``unit`` statistics: both or neither, shape ``(size,)``, std > 0."""
    if mean is None and std is None:
        return None, None
    if mean is None or std is None:
        raise ModelError("front-end normalisation needs both mean and std, or neither")
    mean_array = _as_float32(mean, (size,), f"per-{unit} mean")
    std_array = _as_float32(std, (size,), f"per-{unit} std")
    if np.any(std_array <= 0.0):
        raise ModelError(f"front-end per-{unit} std must be positive")
    return mean_array, std_array


def _finite_or_zero(x: Float32Array) -> Float32Array:
    """``x`` with non-finite samples replaced by 0 and the rest clipped to ±``SAMPLE_LIMIT``."""
    if x.size == 0 or (x.max() <= SAMPLE_LIMIT and x.min() >= -SAMPLE_LIMIT):  # NaN fails both
        return x
    clipped = np.clip(x, -SAMPLE_LIMIT, SAMPLE_LIMIT)
    return np.where(np.isfinite(x), clipped, np.float32(0.0))


def _resolve_threads(threads: int | None) -> int:
    if threads is None:
        return max(1, min(4, os.cpu_count() or 1))
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
    return threads

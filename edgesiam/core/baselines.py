"""Classic recording-level descriptors, scored on the same trials as the learned embeddings.

A learned encoder has to beat these to be worth its weights: MFCC mean/std for audio, per-channel
statistics for sensor windows. Both give one fixed-size vector per recording; z-score them across
the evaluation set with :func:`standardise` before cosine scoring, so no single feature dominates.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgesiam.errors import DataError

FloatArray = NDArray[np.float64]

#: Order of the statistics in :func:`channel_statistics` (each repeated over the channels).
CHANNEL_STATISTICS: tuple[str, ...] = ("mean", "std", "min", "max", "mad", "mean_abs_diff")


def dct_matrix(n_out: int, n_in: int) -> FloatArray:
    """Orthonormal DCT-II matrix ``(n_out, n_in)``: its first ``n_out`` rows map log-mel bins to
    cepstra; ``dct_matrix(n, n) @ x`` equals ``scipy.fft.dct(x, type=2, norm="ortho")``.
    """
    if not 0 < n_out <= n_in:
        raise ValueError(f"need 0 < n_out <= n_in, got n_out={n_out}, n_in={n_in}")
    k = np.arange(n_out, dtype=np.float64)[:, None]
    n = np.arange(n_in, dtype=np.float64)[None, :]
    basis: FloatArray = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis


def _analysis_window(frontend: object) -> int:
    """Samples of one analysis window of a front-end, read from its ``params`` when it has them."""
    params = getattr(frontend, "params", frontend)
    for name in ("win_length", "n_fft"):
        value = getattr(params, name, None)
        if isinstance(value, int | np.integer) and value > 0:
            return int(value)
    return 0


def mfcc_statistics(
    audio: ArrayLike,
    frontend: Callable[[NDArray[np.float32]], ArrayLike],
    n_mfcc: int = 20,
    *,
    min_samples: int | None = None,
) -> FloatArray:
    """MFCC mean and std over the frames of a whole recording → ``(2*n_mfcc,)``.

    ``frontend`` maps audio ``(n,)`` to a log-mel ``(n_mels, T)`` (e.g. ``LogMelFrontEnd``); the
    cepstra are the orthonormal DCT-II of each frame. A recording shorter than ``min_samples`` is
    zero-padded to it; by default that is one analysis window of the front-end
    (``params.win_length`` or ``n_fft``).
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be 1-D (n,), got shape {x.shape}")
    if x.size == 0:
        raise DataError("empty audio recording")
    needed = _analysis_window(frontend) if min_samples is None else min_samples
    if x.size < needed:
        x = np.pad(x, (0, needed - x.size))
    log_mel = np.asarray(frontend(x), dtype=np.float64)
    if log_mel.ndim != 2:
        raise ValueError(f"front-end must return (n_mels, T), got shape {log_mel.shape}")
    cepstra = dct_matrix(n_mfcc, log_mel.shape[0]) @ log_mel
    return np.concatenate([cepstra.mean(axis=1), cepstra.std(axis=1)])


def channel_statistics(x: ArrayLike) -> FloatArray:
    """Per-channel statistics of a sensor recording ``(n, C)`` → ``(6*C,)``, statistic-major.

    The order is :data:`CHANNEL_STATISTICS` (mean, std, min, max, median absolute deviation, mean
    absolute first difference), each over the channels. NaN and infinite samples are ignored; a
    channel with no finite sample (or a difference with no finite pair) gives 0 rather than NaN.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"sensor recording must be (n, C), got shape {a.shape}")
    if a.shape[0] == 0:
        raise DataError("empty sensor recording")
    a = np.where(np.isfinite(a), a, np.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels: handled below
        median = np.nanmedian(a, axis=0)
        diff = np.abs(np.diff(a, axis=0)) if a.shape[0] > 1 else np.full_like(a, np.nan)
        stats = np.stack(
            [
                np.nanmean(a, axis=0),
                np.nanstd(a, axis=0),
                np.nanmin(a, axis=0),
                np.nanmax(a, axis=0),
                np.nanmedian(np.abs(a - median), axis=0),
                np.nanmean(diff, axis=0),
            ]
        )
    result: FloatArray = np.nan_to_num(stats, nan=0.0).ravel()
    return result


def standardise(features: ArrayLike, reference: ArrayLike | None = None) -> FloatArray:
    """Z-score each column of ``features`` (N, F) so cosine scoring weighs features alike.

    Means and stds come from ``reference`` (e.g. the training set) when given, else from
    ``features``. Constant columns become 0 and NaN entries become 0 (the mean), so the output is
    always finite.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, F), got shape {f.shape}")
    r = f if reference is None else np.asarray(reference, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"reference must be (M, {f.shape[1]}), got shape {r.shape}")
    r = np.where(np.isfinite(r), r, np.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(r, axis=0), nan=0.0)
        std = np.nan_to_num(np.nanstd(r, axis=0), nan=0.0)
    scale = np.where(std > 1e-12, std, 1.0)
    z = (np.where(np.isfinite(f), f, mean) - mean) / scale
    result: FloatArray = np.where(std > 1e-12, z, 0.0)
    return result

"""Embedding arithmetic shared by training, evaluation and the device.

Embeddings are compared by cosine similarity, which is a dot product once they are L2-normalised;
a recording's embedding pools its windows' embeddings (docs/ARCHITECTURE.md, contract 3).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgesiam.core.arrays import Float32Array
from edgesiam.errors import DataError


def l2_normalize(x: npt.ArrayLike, axis: int = -1, eps: float = 1e-12) -> Float32Array:
    """``x`` divided by its L2 norm along ``axis``, as float32.

    Norms below ``eps`` are taken as ``eps``, so an all-zero vector stays zero instead of becoming
    NaN.
    """
    array = np.asarray(x, dtype=np.float64)
    norms = np.sqrt(np.sum(np.square(array), axis=axis, keepdims=True))
    normalised: Float32Array = (array / np.maximum(norms, eps)).astype(np.float32)
    return normalised


def recording_embedding(window_embeddings: npt.ArrayLike) -> Float32Array:
    """``(k, D)`` window embeddings → ``(D,)``: the L2-normalised mean of the normalised windows.

    Normalising each window first gives every window the same weight, whatever its norm.
    """
    windows = np.asarray(window_embeddings)
    if windows.ndim != 2:
        raise DataError(f"window embeddings must have shape (k, D), got {windows.shape}")
    if windows.shape[0] == 0:
        raise DataError("a recording embedding needs at least one window embedding, got none")
    return l2_normalize(l2_normalize(windows, axis=1).mean(axis=0))

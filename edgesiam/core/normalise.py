"""Adaptive score normalisation (AS-norm): window-vs-template cosines made comparable across labels.

A raw cosine means different things for different people or sounds: a voice that resembles many
others scores high against everyone. AS-norm measures that from a *cohort* of impostor embeddings:
for a trial between ``a`` and ``b`` with raw cosine ``s``, take the ``top_k`` highest cosines of
``a`` with the cohort (mean ``mu_a``, std ``sigma_a``), likewise for ``b``, and score::

    0.5 * ((s - mu_a) / sigma_a + (s - mu_b) / sigma_b)

The cohort is the bundle's (``cohort.npy``, recordings of the training labels) and, on a device,
the window embeddings of its own background kept by ``edgesiam calibrate`` (see
:class:`NormalisedScorer`). Template statistics are computed once per gallery; each window costs one
``(K, D)`` product with the cohort, a partial sort, and the ``(N, D)`` product with the templates.

numpy only, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from edgesiam.core.arrays import Float64Array, Int64Array

__all__ = [
    "NormalisedScorer",
    "adaptive_s_norm",
    "cohort_statistics",
    "label_starts",
    "window_recording_trials",
]


_MIN_STD: Final = 1e-6


def _unit_rows(x: npt.ArrayLike) -> Float64Array:
    a = np.atleast_2d(np.asarray(x, dtype=np.float64))
    norms: Float64Array = np.linalg.norm(a, axis=1, keepdims=True)
    out: Float64Array = a / np.maximum(norms, 1e-12)
    return out


def cohort_statistics(
    embeddings: npt.ArrayLike, cohort: npt.ArrayLike, top_k: int
) -> tuple[Float64Array, Float64Array]:
    """Mean and std of the ``top_k`` highest cosines of each embedding with the cohort.

    ``embeddings`` ``(N, D)`` and ``cohort`` ``(K, D)`` → two ``(N,)`` arrays (std floored at
    1e-6). A device computes this once per enrolled template and once per window.
    """
    e = _unit_rows(embeddings)
    c = _unit_rows(cohort)
    k = max(1, min(int(top_k), c.shape[0]))
    scores = e @ c.T
    top = np.partition(scores, scores.shape[1] - k, axis=1)[:, -k:]
    mean: Float64Array = top.mean(axis=1)
    std: Float64Array = np.maximum(top.std(axis=1), _MIN_STD)
    return mean, std


def adaptive_s_norm(
    scores: npt.ArrayLike,
    left: tuple[npt.ArrayLike, npt.ArrayLike],
    right: tuple[npt.ArrayLike, npt.ArrayLike],
) -> Float64Array:
    """Normalise raw cosines ``(N, M)`` between N left and M right embeddings.

    ``left`` and ``right`` are the :func:`cohort_statistics` of each side.
    """
    s = np.asarray(scores, dtype=np.float64)
    mu_l, sd_l = (np.asarray(v, dtype=np.float64) for v in left)
    mu_r, sd_r = (np.asarray(v, dtype=np.float64) for v in right)
    out: Float64Array = 0.5 * (
        (s - mu_l[:, None]) / sd_l[:, None] + (s - mu_r[None, :]) / sd_r[None, :]
    )
    return out


def label_starts(template_labels: Sequence[str]) -> tuple[list[str], Int64Array]:
    """The labels of templates sorted by label, and the index where each label's block starts."""
    labels: list[str] = []
    starts: list[int] = []
    for i, label in enumerate(template_labels):
        if not labels or labels[-1] != label:
            if label in labels:
                raise ValueError("templates must be grouped by label (as Gallery keeps them)")
            labels.append(label)
            starts.append(i)
    return labels, np.asarray(starts, dtype=np.int64)


class NormalisedScorer:
    """Per-label AS-norm scores of windows against templates ``(N, D)`` grouped by label.

    ``templates`` and ``template_labels`` are a :class:`~edgesiam.core.matching.Gallery`'s
    ``embeddings`` and ``template_labels``; ``cohort`` ``(K, D)`` the impostor cohort (the
    bundle's, the device's, or both stacked). A label's score is the best normalised score over
    its templates, so the columns of :meth:`scores` follow the gallery's sorted labels.
    """

    def __init__(
        self,
        templates: npt.ArrayLike,
        template_labels: Sequence[str],
        cohort: npt.ArrayLike,
        top_k: int,
    ) -> None:
        c = _unit_rows(cohort)
        if c.shape[0] < 2:
            raise ValueError(f"a score-normalisation cohort needs >= 2 embeddings, got {len(c)}")
        self.cohort = c.astype(np.float32)
        self.top_k = max(1, min(int(top_k), c.shape[0]))
        t = _unit_rows(templates) if len(template_labels) else np.zeros((0, c.shape[1]))
        self.templates = t.astype(np.float32)
        self.labels, self._starts = label_starts(list(template_labels))
        mu, sd = cohort_statistics(t, c, self.top_k) if len(t) else (np.zeros(0), np.ones(0))
        self._mu_t = mu.astype(np.float32)
        self._inv_t = (0.5 / sd).astype(np.float32)

    def __len__(self) -> int:
        return int(self.templates.shape[0])

    def scores(self, queries: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Normalised per-label scores ``(B, L)`` of L2-normalised queries ``(B, D)``."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if not len(self.labels):
            return np.zeros((q.shape[0], 0), dtype=np.float32)
        k = self.top_k
        against = q @ self.cohort.T
        top = np.partition(against, against.shape[1] - k, axis=1)[:, -k:]
        mu_q = top.mean(axis=1, keepdims=True)
        inv_q = 0.5 / np.maximum(top.std(axis=1, keepdims=True), _MIN_STD)
        raw = q @ self.templates.T
        norm = (raw - mu_q) * inv_q + (raw - self._mu_t[None, :]) * self._inv_t[None, :]
        out: npt.NDArray[np.float32] = np.maximum.reduceat(norm, self._starts, axis=1).astype(
            np.float32
        )
        return out


def window_recording_trials(
    windows: npt.ArrayLike,
    owner: npt.ArrayLike,
    recordings: npt.ArrayLike,
    codes: npt.ArrayLike,
    cohort: npt.ArrayLike | None = None,
    top_k: int = 50,
) -> tuple[Float64Array, Float64Array]:
    """Each window ``(W, D)`` of recording ``owner[w]`` against every *other* recording ``(R, D)``
    (label codes ``codes (R,)``): ``(genuine, impostor)`` scores, AS-normalised with ``cohort``
    when one is given. This is how a bundle's window thresholds are calibrated."""
    w = _unit_rows(windows)
    r = _unit_rows(recordings)
    own = np.asarray(owner, dtype=np.int64)
    code = np.asarray(codes, dtype=np.int64)
    scores = w @ r.T
    if cohort is not None:
        scores = adaptive_s_norm(
            scores, cohort_statistics(w, cohort, top_k), cohort_statistics(r, cohort, top_k)
        )
    other = own[:, None] != np.arange(len(r))[None, :]
    same = code[own][:, None] == code[None, :]
    return scores[other & same], scores[other & ~same]

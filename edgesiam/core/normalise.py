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

**Centring on the device's background** (:class:`CentredScorer`, ``matching.centre: background``):
what a device hears shifts every embedding the same way (its microphone, its room, the language
around it), and that shared offset makes strangers look alike. The mean of the background windows
``edgesiam calibrate`` kept is subtracted from each window and template, which are L2-normalised
again before the cosine: ``cos(unit(a - m), unit(b - m))``. This is the per-domain mean
normalisation of speaker recognition back-ends, taken from the device's own few minutes of sound.

numpy only, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from edgesiam.core.arrays import Float64Array, Int64Array
from edgesiam.core.matching import Gallery


class _Scorer(Protocol):
    @property
    def labels(self) -> Sequence[str]: ...

    def scores(self, queries: npt.ArrayLike) -> npt.NDArray[np.float32]: ...


__all__ = [
    "MIN_CENTRE",
    "CentredScorer",
    "NormalisedScorer",
    "adaptive_s_norm",
    "background_mean",
    "centre_rows",
    "centred_gallery",
    "cohort_statistics",
    "label_starts",
    "window_recording_trials",
]


_MIN_STD: Final = 1e-6
MIN_CENTRE: Final = 10
"""Fewest background windows whose mean a device centres on (fewer: no centring)."""


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


def background_mean(background: npt.ArrayLike) -> Float64Array | None:
    """The mean of the L2-normalised background windows ``(K, D)`` (NaN rows, the gated ones,
    skipped); None when fewer than :data:`MIN_CENTRE` windows remain."""
    b = np.atleast_2d(np.asarray(background, dtype=np.float64))
    b = b[np.all(np.isfinite(b), axis=1)]
    if b.shape[0] < MIN_CENTRE:
        return None
    mean: Float64Array = _unit_rows(b).mean(axis=0)
    return mean


def centre_rows(x: npt.ArrayLike, mean: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """``unit(x - mean)`` per row of L2-normalised embeddings ``(N, D)``, in float32 (it runs
    once per window); a row that the mean would cancel (norm below 1e-6) keeps its own direction,
    and NaN rows stay NaN."""
    a = np.atleast_2d(np.asarray(x, dtype=np.float32))
    c = a - np.asarray(mean, dtype=np.float32)[None, :]
    norms = np.sqrt(np.einsum("ij,ij->i", c, c))
    ok = norms > 1e-6
    if ok.all():
        out: npt.NDArray[np.float32] = c / norms[:, None]
        return out
    own = a / np.maximum(np.sqrt(np.einsum("ij,ij->i", a, a)), 1e-12)[:, None]
    kept: npt.NDArray[np.float32] = np.where(
        ok[:, None], c / np.maximum(norms, 1e-12)[:, None], own
    )
    return kept.astype(np.float32)


def centred_gallery(gallery: Gallery, mean: npt.ArrayLike) -> Gallery:
    """``gallery`` with every template centred on ``mean`` (:func:`centre_rows`)."""
    return Gallery.from_templates(
        centre_rows(gallery.embeddings, mean),
        gallery.template_labels,
        gallery.aggregate,
        gallery.dim,
    )


class CentredScorer:
    """Another scorer (a gallery, or AS-norm) built on centred templates, fed centred queries.

    ``inner`` must have been built from :func:`centre_rows` of the templates (and cohort) with the
    same ``mean``; :meth:`scores` centres the queries and asks it. Columns follow ``inner.labels``.
    """

    def __init__(self, inner: _Scorer, mean: npt.ArrayLike) -> None:
        self.inner = inner
        self.mean = np.asarray(mean, dtype=np.float32)

    @property
    def labels(self) -> Sequence[str]:
        return self.inner.labels

    def scores(self, queries: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Per-label scores ``(B, L)`` of queries ``(B, D)``, centred first."""
        return self.inner.scores(centre_rows(queries, self.mean))

"""Matching window embeddings against enrolled templates: the gallery and its thresholds.

A :class:`Gallery` holds L2-normalised templates (one per enrolled recording; docs/ARCHITECTURE.md, contract 3), each
with a label. :meth:`Gallery.scores` gives every query one score per label:

- ``aggregate="max"`` (the default): the cosine to the label's *best* template. One matrix
  product of the queries with every template, then a segmented maximum
  (``np.maximum.reduceat``) over the templates, which are kept sorted by label.
- ``aggregate="mean"``: the cosine to the label's L2-normalised mean template (the "prototype").
  Steadier when a label has many templates, but a single odd recording drags it; calibrated
  thresholds (window against one recording) fit ``"max"`` best.

Labels (the columns of the scores) are sorted, whatever order they were enrolled in.

:class:`Thresholds` holds the accept-if-``score >= threshold`` value: one default (usually the
bundle's calibrated threshold for a target false-match rate, see :func:`threshold_for`) and
optional per-label overrides.

numpy only, no I/O: the device and evaluation use the same code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from edgesiam.core.arrays import Float32Array, Int64Array
from edgesiam.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_TARGET_FMR",
    "Aggregate",
    "Gallery",
    "Thresholds",
    "fmr_label",
    "threshold_for",
]

Aggregate = Literal["max", "mean"]

DEFAULT_TARGET_FMR: Final = 1e-3
"""The false-match rate whose calibrated threshold is used unless another is asked for."""

_EPS: Final = 1e-12


def _unit_rows(x: npt.NDArray[np.floating]) -> Float32Array:
    x64 = x.astype(np.float64, copy=False)
    norms = np.sqrt(np.einsum("ij,ij->i", x64, x64))[:, None]
    out: Float32Array = (x64 / np.maximum(norms, _EPS)).astype(np.float32)
    return out


class Gallery:
    """Enrolled templates of fixed dimension ``dim``, grouped by label.

    ``add(label, embeddings)`` stores ``(k, D)`` (or one ``(D,)``) embeddings, L2-normalised;
    ``remove(label)`` drops a label. ``scores(queries)`` → ``(B, L)`` float32 per-label scores in
    the order of :attr:`labels` (sorted); ``best(queries)`` → the best label's index and score
    per query. An empty gallery scores ``(B, 0)``, and ``best`` then answers index -1 and score
    ``-inf`` (never a match).
    """

    def __init__(self, dim: int, aggregate: Aggregate = "max") -> None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise ConfigError(f"the gallery's embedding dimension must be >= 1, got {dim!r}")
        if aggregate not in ("max", "mean"):
            raise ConfigError(f"aggregate must be 'max' or 'mean', got {aggregate!r}")
        self.dim = int(dim)
        self.aggregate: Aggregate = aggregate
        self._templates: dict[str, Float32Array] = {}
        self._labels: list[str] = []
        self._matrix: Float32Array = np.zeros((0, self.dim), dtype=np.float32)
        self._starts: Int64Array = np.zeros(0, dtype=np.int64)
        self._means: Float32Array = np.zeros((0, self.dim), dtype=np.float32)

    def __repr__(self) -> str:
        return (
            f"Gallery(dim={self.dim}, labels={len(self._labels)}, templates={len(self)}, "
            f"aggregate={self.aggregate!r})"
        )

    def __len__(self) -> int:
        """The number of templates (all labels together)."""
        return int(self._matrix.shape[0])

    def __contains__(self, label: object) -> bool:
        return label in self._templates

    @property
    def labels(self) -> list[str]:
        """The enrolled labels, sorted: the columns of :meth:`scores`."""
        return list(self._labels)

    def counts(self) -> dict[str, int]:
        """Templates per label, in label order."""
        return {label: int(self._templates[label].shape[0]) for label in self._labels}

    def templates(self, label: str) -> Float32Array:
        """A copy of one label's templates ``(k, D)``."""
        if label not in self._templates:
            raise KeyError(label)
        return self._templates[label].copy()

    @property
    def embeddings(self) -> Float32Array:
        """Every template ``(N, D)`` (a copy), sorted by label; see :attr:`template_labels`."""
        return self._matrix.copy()

    @property
    def template_labels(self) -> list[str]:
        """The label of each row of :attr:`embeddings`."""
        return [label for label in self._labels for _ in range(self._templates[label].shape[0])]

    @classmethod
    def from_templates(
        cls,
        embeddings: npt.ArrayLike,
        labels: Sequence[str],
        aggregate: Aggregate = "max",
        dim: int | None = None,
    ) -> Gallery:
        """A gallery from templates ``(N, D)`` and their ``N`` labels, built in one pass."""
        x = np.asarray(embeddings)
        if x.ndim != 2 or (dim is None and x.shape[1] == 0):
            raise DataError(f"templates must have shape (N, D), got {x.shape}")
        if len(labels) != x.shape[0]:
            raise DataError(f"{x.shape[0]} templates but {len(labels)} labels")
        gallery = cls(int(x.shape[1]) if dim is None else dim, aggregate)
        if x.shape[0] == 0:
            return gallery
        names = np.asarray(labels, dtype=object)
        order = np.argsort(names, kind="stable")
        sorted_names = names[order]
        cut = np.flatnonzero(sorted_names[1:] != sorted_names[:-1]) + 1
        for rows in np.split(order, cut):
            gallery._put(str(names[rows[0]]), x[rows])
        gallery._rebuild()
        return gallery

    def add(self, label: str, embeddings: npt.ArrayLike) -> None:
        """Add templates ``(k, D)`` or one ``(D,)`` to ``label`` (created when new).

        Templates are L2-normalised; all-zero or non-finite embeddings are refused.
        """
        self._put(label, embeddings)
        self._rebuild()

    def _put(self, label: str, embeddings: npt.ArrayLike) -> None:
        if not isinstance(label, str) or not label:
            raise ConfigError(f"a label must be a non-empty string, got {label!r}")
        x = np.asarray(embeddings)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim or x.shape[0] == 0:
            raise DataError(
                f"templates for '{label}' must have shape (k, {self.dim}) with k >= 1, "
                f"got {tuple(np.shape(embeddings))}"
            )
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataError(f"templates for '{label}' must be real numbers, got {x.dtype}")
        x64 = x.astype(np.float64)
        if not np.all(np.isfinite(x64)):
            raise DataError(f"templates for '{label}' hold NaN or infinite values")
        if np.any(np.sqrt(np.einsum("ij,ij->i", x64, x64)) < 1e-8):
            raise DataError(f"a template for '{label}' is all zeros: it cannot be normalised")
        unit = _unit_rows(x64)
        old = self._templates.get(label)
        self._templates[label] = unit if old is None else np.concatenate([old, unit])

    def remove(self, label: str) -> int:
        """Drop ``label``; returns how many templates it had (0 when it was not enrolled)."""
        old = self._templates.pop(label, None)
        if old is None:
            return 0
        self._rebuild()
        return int(old.shape[0])

    def clear(self) -> None:
        """Drop every label."""
        self._templates.clear()
        self._rebuild()

    def _rebuild(self) -> None:
        self._labels = sorted(self._templates)
        if not self._labels:
            self._matrix = np.zeros((0, self.dim), dtype=np.float32)
            self._starts = np.zeros(0, dtype=np.int64)
            self._means = np.zeros((0, self.dim), dtype=np.float32)
            return
        blocks = [self._templates[label] for label in self._labels]
        sizes = np.array([b.shape[0] for b in blocks], dtype=np.int64)
        self._matrix = np.ascontiguousarray(np.concatenate(blocks), dtype=np.float32)
        self._starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._means = _unit_rows(np.stack([b.astype(np.float64).mean(axis=0) for b in blocks]))

    def _queries(self, queries: npt.ArrayLike) -> Float32Array:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(
                f"queries must have shape (B, {self.dim}) or ({self.dim},), "
                f"got {tuple(np.shape(queries))}"
            )
        return q

    def scores(self, queries: npt.ArrayLike) -> Float32Array:
        """Per-label scores ``(B, L)`` of queries ``(B, D)`` (or one ``(D,)`` → ``(1, L)``).

        Queries are taken as they are: pass L2-normalised embeddings (a bundle's are), so the
        scores are cosines. Columns follow :attr:`labels`.
        """
        q = self._queries(queries)
        if not self._labels:
            return np.zeros((q.shape[0], 0), dtype=np.float32)
        if self.aggregate == "mean":
            means: Float32Array = q @ self._means.T
            return means
        every = q @ self._matrix.T  # (B, N)
        if self._starts.shape[0] == every.shape[1]:  # one template per label
            return every
        best: Float32Array = np.maximum.reduceat(every, self._starts, axis=1)
        return best

    def best(self, queries: npt.ArrayLike) -> tuple[Int64Array, Float32Array]:
        """The best label's index (into :attr:`labels`) and score, per query: ``(B,)``, ``(B,)``.

        NaN queries score NaN for every label; they get the first label and a NaN score, which
        no threshold accepts.
        """
        s = self.scores(queries)
        if s.shape[1] == 0:
            n = s.shape[0]
            return np.full(n, -1, dtype=np.int64), np.full(n, -np.inf, dtype=np.float32)
        idx = np.argmax(s, axis=1).astype(np.int64)
        top: Float32Array = s.max(axis=1)  # the argmax's score (NaN rows: NaN, first label)
        return idx, top


def fmr_label(fmr: float) -> str:
    """A false-match rate as the bundle manifest keys it: ``1e-3`` → ``"0.001"``."""
    return np.format_float_positional(fmr, trim="-")


def _check_threshold(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def threshold_for(manifest_thresholds: Mapping[str, float], target_fmr: float) -> float:
    """The calibrated threshold for ``target_fmr`` in a manifest's ``at_fmr`` table.

    Keys are false-match rates written as in the manifest (``"0.001"``); any key that parses to
    the same rate matches. Raises ``ConfigError`` naming the rates the bundle was calibrated
    for when there is no threshold for this one.
    """
    if (
        isinstance(target_fmr, bool)
        or not isinstance(target_fmr, int | float | np.floating)
        or not 0.0 < float(target_fmr) < 1.0
    ):
        raise ConfigError(f"target_fmr must be a false-match rate in (0, 1), got {target_fmr!r}")
    available: list[tuple[float, str]] = []
    for key in manifest_thresholds:
        try:
            available.append((float(key), key))
        except ValueError:
            continue
    for rate, key in available:
        if math.isclose(rate, float(target_fmr), rel_tol=1e-9, abs_tol=0.0):
            return _check_threshold(manifest_thresholds[key], f"the threshold for FMR {key}")
    listed = ", ".join(fmr_label(rate) for rate, _ in sorted(available, reverse=True)) or "none"
    raise ConfigError(
        f"the bundle has no threshold calibrated for a false-match rate of "
        f"{fmr_label(float(target_fmr))}; it has: {listed}. Pick one of those as target_fmr, "
        "or give an explicit threshold"
    )


@dataclass(frozen=True)
class Thresholds:
    """Accept-if-``score >= threshold`` values: ``default`` for every label, ``per_label`` overrides."""

    default: float
    per_label: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default", _check_threshold(self.default, "the threshold"))
        checked = {
            str(label): _check_threshold(value, f"the threshold for '{label}'")
            for label, value in dict(self.per_label).items()
        }
        object.__setattr__(self, "per_label", checked)

    def for_label(self, label: str) -> float:
        """The threshold of ``label`` (its override, else the default)."""
        return self.per_label.get(label, self.default)

    def vector(self, labels: Sequence[str]) -> Float32Array:
        """Thresholds ``(L,)`` float32 for score columns in the order of ``labels``."""
        return np.array([self.for_label(label) for label in labels], dtype=np.float32)

    @classmethod
    def from_manifest(
        cls,
        at_fmr: Mapping[str, float],
        target_fmr: float = DEFAULT_TARGET_FMR,
        threshold: float | None = None,
        per_label: Mapping[str, float] | None = None,
    ) -> Thresholds:
        """An explicit ``threshold`` when given, else the manifest's value for ``target_fmr``."""
        default = threshold if threshold is not None else threshold_for(at_fmr, target_fmr)
        return cls(default, dict(per_label or {}))

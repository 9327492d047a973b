"""Verification and few-shot metrics over recording embeddings (numpy only; runs on devices too).

Every rate here is a fraction in [0, 1], never a percentage. Scores are cosine similarities and a
trial is accepted when ``score >= threshold``. The same functions calibrate thresholds on a device
and score systems on a workstation, so they take plain arrays and sequences and do no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgesiam.errors import DataError

FloatArray = NDArray[np.float64]

_EPS = 1e-12
# Rows of a score block computed at once: bounds the memory of pairwise work to ~32 MB per block.
_BLOCK_ELEMENTS = 4_000_000


def _as_matrix(x: ArrayLike, name: str) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, D), got shape {a.shape}")
    return a


def _normalise_rows(a: FloatArray) -> FloatArray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    result: FloatArray = a / np.maximum(norms, _EPS)
    return result


def _as_scores(x: ArrayLike, name: str) -> FloatArray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise DataError(f"no {name} scores: at least one {name} trial is needed")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name} scores contain NaN or infinite values")
    return a


def _just_above(x: float) -> float:
    """The next float32 above ``x``: a threshold that rejects ``x`` in float32 and float64 alike."""
    x32 = np.float32(x)
    if float(x32) > x:
        return float(x32)
    return float(np.nextafter(x32, np.float32(np.inf)))


def cosine_matrix(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """Cosine similarity of every row of ``a`` (N, D) with every row of ``b`` (M, D) → (N, M).

    Rows are L2-normalised here, so raw features can be passed; an all-zero row scores 0 with
    everything.
    """
    am = _as_matrix(a, "a")
    bm = _as_matrix(b, "b")
    if am.shape[1] != bm.shape[1]:
        raise ValueError(f"dimension mismatch: a has D={am.shape[1]}, b has D={bm.shape[1]}")
    result: FloatArray = _normalise_rows(am) @ _normalise_rows(bm).T
    return result


def _codes(values: Sequence[object]) -> NDArray[np.int64]:
    """Integer code per value (equal values share a code)."""
    index: dict[object, int] = {}
    return np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)


@dataclass(frozen=True)
class Trials:
    """Scores of all unordered pairs of recordings, split by whether the two share a label.

    ``hard_impostor`` is the subset of ``impostor`` whose two recordings share a (non-None) group,
    e.g. the same language or the same spoken line: the trials a system cannot pass by recognising
    the group.
    """

    genuine: FloatArray
    impostor: FloatArray
    hard_impostor: FloatArray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))


def trial_scores(
    embeddings: ArrayLike,
    labels: Sequence[str],
    groups: Sequence[str | None] | None = None,
) -> Trials:
    """Cosine scores of every pair i < j of recordings, vectorised over row blocks.

    Memory is dominated by the output (8 bytes per pair: ~400 MB at 10k recordings).
    """
    emb = _normalise_rows(_as_matrix(embeddings, "embeddings"))
    n = emb.shape[0]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} embeddings")
    if groups is not None and len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} embeddings")
    label_code = _codes(list(labels))
    group_code = (
        np.array(
            [-1 if g is None else c for g, c in zip(groups, _codes(list(groups)), strict=True)],
            dtype=np.int64,
        )
        if groups is not None
        else None
    )
    genuine: list[FloatArray] = []
    impostor: list[FloatArray] = []
    hard: list[FloatArray] = []
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    cols = np.arange(n)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        block = emb[start:stop] @ emb.T
        upper = cols[None, :] > np.arange(start, stop)[:, None]
        same = label_code[start:stop, None] == label_code[None, :]
        genuine.append(block[upper & same])
        diff = upper & ~same
        impostor.append(block[diff])
        if group_code is not None:
            g = group_code[start:stop, None]
            hard.append(block[diff & (g == group_code[None, :]) & (g >= 0)])

    def cat(parts: list[FloatArray]) -> FloatArray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)

    return Trials(genuine=cat(genuine), impostor=cat(impostor), hard_impostor=cat(hard))


def window_template_trials(
    windows: ArrayLike, owner: ArrayLike, templates: ArrayLike, labels: Sequence[str]
) -> tuple[FloatArray, FloatArray]:
    """Window scores as a device computes them: ``(genuine, impostor)``.

    Each window ``(W, D)`` of recording ``owner[w]`` is scored against every label's best
    template (the maximum cosine over that label's recordings ``templates (R, D)``), its own
    recording left out, as if all the others were enrolled. Genuine: its own label (when that label
    has another recording); impostor: every other label, one trial each.
    """
    win = _normalise_rows(_as_matrix(windows, "windows"))
    tpl = _normalise_rows(_as_matrix(templates, "templates"))
    own = np.asarray(owner, dtype=np.int64)
    if len(labels) != tpl.shape[0] or own.shape != (win.shape[0],):
        raise ValueError("one label per template and one owner per window are needed")
    codes = _codes(list(labels))
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    scores = win @ tpl.T
    scores[np.arange(win.shape[0]), own] = -np.inf  # a window never meets its own recording
    best = np.maximum.reduceat(scores[:, order], starts, axis=1)  # (W, labels)
    mine = codes[own]
    columns = np.arange(best.shape[1])[None, :] == mine[:, None]
    genuine = best[columns]
    impostor = best[~columns]
    return genuine[np.isfinite(genuine)], impostor[np.isfinite(impostor)]


def det_curve(genuine: ArrayLike, impostor: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Exact DET curve: ``(thresholds, fmr, fnmr)`` at every distinct score.

    ``thresholds`` are the sorted unique scores followed by one value just above the highest score,
    so the curve runs from (fmr=1, fnmr=0) to (fmr=0, fnmr=1). ``fmr`` (false-match rate) is the
    fraction of impostor scores ``>= threshold``; ``fnmr`` is the fraction of genuine scores ``<
    threshold``.
    """
    gen = np.sort(_as_scores(genuine, "genuine"))
    imp = np.sort(_as_scores(impostor, "impostor"))
    unique = np.unique(np.concatenate([gen, imp]))
    thresholds = np.append(unique, _just_above(float(unique[-1])))
    fmr = (imp.size - np.searchsorted(imp, thresholds, side="left")) / imp.size
    fnmr = np.searchsorted(gen, thresholds, side="left") / gen.size
    return thresholds, fmr.astype(np.float64), fnmr.astype(np.float64)


def equal_error_rate(genuine: ArrayLike, impostor: ArrayLike) -> tuple[float, float]:
    """``(eer, threshold)``: where FMR and FNMR cross, linearly interpolated between DET points.

    The EER is a fraction (0 for perfectly separated scores, about 0.5 for indistinguishable ones).
    """
    thresholds, fmr, fnmr = det_curve(genuine, impostor)
    gap = fmr - fnmr  # starts at 1 (accept all), ends at -1 (reject all), never increases
    k = int(np.argmax(gap <= 0.0))
    before, after = gap[k - 1], gap[k]
    alpha = before / (before - after)
    eer = fmr[k - 1] + alpha * (fmr[k] - fmr[k - 1])
    threshold = thresholds[k - 1] + alpha * (thresholds[k] - thresholds[k - 1])
    return float(eer), float(threshold)


def min_dcf(
    genuine: ArrayLike,
    impostor: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Minimum normalised detection cost (NIST SRE style) over all thresholds.

    ``DCF(t) = c_miss·p·FNMR(t) + c_fa·(1−p)·FMR(t)``, divided by ``min(c_miss·p, c_fa·(1−p))``,
    the cost of the better trivial system (accept all or reject all); so 1.0 means no better than
    trivial.
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    _, fmr, fnmr = det_curve(genuine, impostor)
    cost = c_miss * p_target * fnmr + c_fa * (1.0 - p_target) * fmr
    return float(np.min(cost) / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def threshold_at_fmr(impostor: ArrayLike, target_fmr: float) -> float:
    """Smallest threshold whose false-match rate on ``impostor`` is ``<= target_fmr``.

    Candidates are the impostor scores themselves plus one value just above the highest, so the
    result is an observed score (it survives a float32 cast on a device). When ``target_fmr <
    1/len(impostor)`` the only rate that satisfies it is 0, and the result is the float32 just
    above the highest impostor score: such a threshold is not backed by data (about
    ``3/target_fmr`` impostor trials are needed for that). A ``target_fmr >= 1`` returns the lowest
    impostor score (everything is accepted).
    """
    if not target_fmr >= 0.0:  # also rejects NaN
        raise ValueError(f"target_fmr must be >= 0, got {target_fmr}")
    imp = np.sort(_as_scores(impostor, "impostor"))
    n = imp.size
    allowed = int(np.floor(target_fmr * n + 1e-9))  # most impostors that may be accepted
    unique = np.unique(imp)
    accepted = n - np.searchsorted(imp, unique, side="left")
    ok = np.flatnonzero(accepted <= allowed)
    if ok.size == 0:
        return _just_above(float(imp[-1]))
    return float(unique[ok[0]])


def rates_at_threshold(
    genuine: ArrayLike, impostor: ArrayLike, threshold: float
) -> tuple[float | None, float | None]:
    """``(fmr, fnmr)`` of a fixed threshold: the share of impostor scores ``>= threshold`` and of
    genuine scores ``< threshold``. Used to check a threshold calibrated on other data (a bundle's
    manifest) against new trials; a rate without trials is ``None``."""
    gen = np.asarray(genuine, dtype=np.float64).ravel()
    imp = np.asarray(impostor, dtype=np.float64).ravel()
    fmr = float(np.mean(imp >= threshold)) if imp.size else None
    fnmr = float(np.mean(gen < threshold)) if gen.size else None
    return fmr, fnmr


def few_shot_accuracy(
    embeddings: ArrayLike,
    labels: Sequence[str],
    n_way: int = 5,
    k_shot: int = 1,
    episodes: int = 1000,
    max_queries_per_label: int = 5,
    seed: int = 0,
) -> tuple[float, float]:
    """``(mean accuracy, 95% CI half-width)`` of nearest-prototype classification in episodes.

    Each episode draws ``n_way`` labels among those with at least ``k_shot + 1`` recordings, takes
    ``k_shot`` random recordings of each as the support (prototype = normalised mean of the
    normalised shots) and up to ``max_queries_per_label`` of the others as queries. Accuracy is
    averaged per episode; the half-width is ``1.96·std/sqrt(episodes)``. Chance level is
    ``1/n_way``.
    """
    if n_way < 2 or k_shot < 1 or episodes < 1 or max_queries_per_label < 1:
        raise ValueError("need n_way >= 2, k_shot >= 1, episodes >= 1, max_queries_per_label >= 1")
    emb = _normalise_rows(_as_matrix(embeddings, "embeddings"))
    if len(labels) != emb.shape[0]:
        raise ValueError(f"{len(labels)} labels for {emb.shape[0]} embeddings")
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    eligible = [np.array(ix) for _, ix in sorted(by_label.items()) if len(ix) >= k_shot + 1]
    if len(eligible) < n_way:
        raise DataError(
            f"{n_way}-way {k_shot}-shot needs {n_way} labels with at least {k_shot + 1} recordings "
            f"each; only {len(eligible)} of {len(by_label)} labels have that many"
        )
    rng = np.random.default_rng(seed)
    accuracy = np.empty(episodes, dtype=np.float64)
    for e in range(episodes):
        chosen = rng.choice(len(eligible), size=n_way, replace=False)
        prototypes = np.empty((n_way, emb.shape[1]), dtype=np.float64)
        queries: list[NDArray[np.int64]] = []
        truth: list[NDArray[np.int64]] = []
        for way, c in enumerate(chosen):
            order = rng.permutation(eligible[c])
            prototypes[way] = emb[order[:k_shot]].mean(axis=0)
            q = order[k_shot : k_shot + max_queries_per_label]
            queries.append(q)
            truth.append(np.full(q.size, way, dtype=np.int64))
        predicted = np.argmax(emb[np.concatenate(queries)] @ _normalise_rows(prototypes).T, axis=1)
        accuracy[e] = float(np.mean(predicted == np.concatenate(truth)))
    half_width = 1.96 * float(np.std(accuracy, ddof=1)) / np.sqrt(episodes) if episodes > 1 else 0.0
    return float(np.mean(accuracy)), float(half_width)


def leave_one_out_top1(embeddings: ArrayLike, labels: Sequence[str]) -> float:
    """Fraction of queries whose nearest other recording (cosine) has the same label.

    Only recordings whose label has at least two recordings are queries (a singleton cannot be
    right), but every recording, singletons included, is a candidate neighbour (a distractor).
    """
    emb = _normalise_rows(_as_matrix(embeddings, "embeddings"))
    n = emb.shape[0]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} embeddings")
    code = _codes(list(labels))
    counts = np.bincount(code)
    queries = np.flatnonzero(counts[code] >= 2)
    if queries.size == 0:
        raise DataError("leave-one-out needs at least one label with two or more recordings")
    hits = 0
    rows = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, queries.size, rows):
        q = queries[start : start + rows]
        scores = emb[q] @ emb.T
        scores[np.arange(q.size), q] = -np.inf
        hits += int(np.sum(code[np.argmax(scores, axis=1)] == code[q]))
    return hits / queries.size

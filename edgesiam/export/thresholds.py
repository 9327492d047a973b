"""Thresholds a bundle ships: per target false-match rate, from held-out trials.

A threshold is calibrated on labels the model never saw, with the deployed int8 model, for two
kinds of trial: recording against recording, and one window against an enrolled recording (what a
live stream scores). When the export is given held-out folders recorded through other channels
(``--threshold-data``), each target's threshold is the strictest over the folders, so the target
holds on every one of them rather than on the cleanest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from edgesiam.core.metrics import equal_error_rate, threshold_at_fmr, trial_scores
from edgesiam.core.normalise import window_recording_trials
from edgesiam.export.gate import HeldOutResult
from edgesiam.model.bundle import FMR_TARGETS, Thresholds, ThresholdSet, fmr_key

__all__ = [
    "MAX_WINDOW_TRIALS",
    "heldout_thresholds",
    "recording_trials",
    "strictest",
    "strictest_thresholds",
    "threshold_set",
    "window_trials",
]

MAX_WINDOW_TRIALS: Final = 5_000_000


def threshold_set(
    genuine: np.ndarray,
    impostor: np.ndarray,
    trials: str,
    scores: str = "cosine",
    targets: Sequence[float] = FMR_TARGETS,
) -> ThresholdSet:
    """Thresholds at each target false-match rate and at the EER, from trial scores."""
    eer, eer_threshold = equal_error_rate(genuine, impostor)
    return ThresholdSet(
        trials=trials,
        scores=scores,
        genuine=len(genuine),
        impostor=len(impostor),
        eer=eer,
        eer_threshold=eer_threshold,
        at_fmr={fmr_key(f): threshold_at_fmr(impostor, f) for f in targets},
        supported={fmr_key(f): bool(len(impostor) * f >= 3.0) for f in targets},
    )


def strictest(sets: Sequence[ThresholdSet]) -> ThresholdSet:
    """One set whose threshold at each target is the highest of ``sets``: the target holds on
    each set's data. The EER (and its threshold) stay those of the first set, the reference
    held-out data; the trial counts are the sums; a target is supported only where every set
    supports it."""
    if not sets:
        raise ValueError("no threshold set to combine")
    first = sets[0]
    if any(s.trials != first.trials or s.scores != first.scores for s in sets):
        raise ValueError("threshold sets of different trials or scores cannot be combined")
    return first.model_copy(
        update={
            "genuine": sum(s.genuine for s in sets),
            "impostor": sum(s.impostor for s in sets),
            "at_fmr": {k: max(s.at_fmr[k] for s in sets) for k in first.at_fmr},
            "supported": {k: all(s.supported.get(k, False) for s in sets) for k in first.at_fmr},
        }
    )


def recording_trials(
    embeddings: np.ndarray, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of every pair i < j of recordings: ``(genuine, impostor)``."""
    trials = trial_scores(embeddings, list(labels))
    return trials.genuine, trials.impostor


def window_trials(
    heldout: HeldOutResult,
    model: str = "int8",
    seed: int = 0,
    cohort: np.ndarray | None = None,
    top_k: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Each window against every other recording's embedding: what a live matcher scores
    (AS-normalised against ``cohort`` when one is given).

    Windows are subsampled (seeded) so that there are at most ``MAX_WINDOW_TRIALS`` trials.
    """
    windows = heldout.window_matrix(model).astype(np.float64)
    owner = heldout.window_owner()
    recs = heldout.recordings[model].astype(np.float64)
    limit = max(1, MAX_WINDOW_TRIALS // max(1, len(recs)))
    if len(windows) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(windows), limit, replace=False))
        windows, owner = windows[keep], owner[keep]
    codes = np.unique(np.asarray(heldout.labels), return_inverse=True)[1]
    return window_recording_trials(windows, owner, recs, codes, cohort, top_k)


def heldout_thresholds(heldout: HeldOutResult, seed: int, data: str) -> Thresholds:
    """Thresholds of the deployed (int8) model on one held-out folder, per recording and per
    window; ``data`` names the folder as the manifest shows it."""
    rec_gen, rec_imp = recording_trials(heldout.recordings["int8"], heldout.labels)
    win_gen, win_imp = window_trials(heldout, "int8", seed=seed)
    return Thresholds(
        data=data,
        labels=len(set(heldout.labels)),
        recordings=len(heldout.labels),
        recording=threshold_set(rec_gen, rec_imp, "recording-vs-recording"),
        window=threshold_set(win_gen, win_imp, "window-vs-recording"),
    )


def strictest_thresholds(found: Sequence[Thresholds]) -> Thresholds:
    """The thresholds of several held-out folders combined with :func:`strictest`; ``data``
    lists every folder, labels and recordings are those of the first (the reference)."""
    first = found[0]
    return first.model_copy(
        update={
            "data": ", ".join(t.data for t in found),
            "recording": strictest([t.recording for t in found]),
            "window": strictest([t.window for t in found]),
        }
    )

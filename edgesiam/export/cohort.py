"""The score-normalisation cohort a bundle may ship (adaptive s-norm, ``cohort.npy``).

The cohort is the int8 model's embedding of a sample of training recordings. It ships only when
normalising held-out scores against it lowers the EER; the runtime then scores windows with the
normalised score (``matching.score_norm: cohort``) and the manifest carries its thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from edgesiam.core.embedding import l2_normalize
from edgesiam.core.metrics import equal_error_rate
from edgesiam.export.thresholds import recording_trials, threshold_set
from edgesiam.model.bundle import CohortInfo, adaptive_s_norm, cohort_statistics

__all__ = ["COHORT_FILE", "CohortResult", "evaluate_cohort"]

COHORT_FILE: Final = "cohort.npy"


@dataclass
class CohortResult:
    info: CohortInfo
    embeddings: np.ndarray


def evaluate_cohort(
    heldout_embeddings: np.ndarray,
    labels: Sequence[str],
    cohort: np.ndarray,
    top_k: int,
    data: str,
) -> CohortResult:
    """Held-out EER with raw cosines and with adaptive s-norm against ``cohort``.

    The cohort is used (``info.used``) only when it lowers the EER.
    """
    k = max(1, min(int(top_k), len(cohort)))
    e = l2_normalize(heldout_embeddings, axis=1).astype(np.float64)
    genuine, impostor = recording_trials(e, labels)
    eer_raw = equal_error_rate(genuine, impostor)[0]
    stats = cohort_statistics(e, cohort, k)
    normalised = adaptive_s_norm(e @ e.T, stats, stats)
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    i, j = np.triu_indices(len(e), k=1)
    same = codes[i] == codes[j]
    scores = normalised[i, j]
    eer_norm = equal_error_rate(scores[same], scores[~same])[0]
    used = eer_norm < eer_raw - 1e-9
    info = CohortInfo(
        top_k=k,
        size=len(cohort),
        data=data,
        eer_raw=eer_raw,
        eer_normalised=eer_norm,
        used=used,
        file=COHORT_FILE if used else None,
        thresholds=threshold_set(
            scores[same], scores[~same], "recording-vs-recording", "adaptive-s-norm"
        )
        if used
        else None,
    )
    return CohortResult(info, np.asarray(cohort, dtype=np.float32))

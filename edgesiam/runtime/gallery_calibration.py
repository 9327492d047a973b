"""Per-label thresholds from the device's own impostors: the maths behind ``edgesiam calibrate``
and the review loop (a rejected window raises its label's threshold).

It reads the runtime only through :class:`CalibrationTarget`, so the device pipeline can call the
review loop while ``edgesiam calibrate`` (:mod:`edgesiam.runtime.calibrate`) runs the pipeline:
neither imports the other's module back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgesiam.core.calibration import (
    DEFAULT_FALSE_PER_HOUR,
    MIN_TAIL,
    REJECT_MARGIN,
    LabelCalibration,
    calibrate_label,
    leave_one_out_hits,
)
from edgesiam.core.matching import Gallery
from edgesiam.core.stream import Scorer, StreamMatcher
from edgesiam.errors import DataError
from edgesiam.runtime.calibration_store import Calibration, CalibrationStore, DeviceCohort, bounded
from edgesiam.runtime.config import MatchingConfig, RuntimeConfig
from edgesiam.runtime.gallery_store import GalleryStore
from edgesiam.runtime.sources.base import StreamFormat

if TYPE_CHECKING:
    from edgesiam.model.interpreters import BundleEmbedder

__all__ = [
    "Background",
    "CalibrationTarget",
    "calibrate_gallery",
    "recalibrate_label",
    "review_calibration",
]


class CalibrationTarget(Protocol):
    """What calibration reads from a device runtime (:class:`edgesiam.runtime.pipeline.Runtime`)."""

    config: RuntimeConfig
    matching: MatchingConfig
    embedder: BundleEmbedder
    format: StreamFormat
    gallery: Gallery
    store: GalleryStore
    calibration: Calibration | None
    calibration_store: CalibrationStore
    device_cohort: DeviceCohort | None
    bundle_cohort: np.ndarray | None
    window_at_fmr: dict[str, float]
    matcher: StreamMatcher

    @property
    def score_kind(self) -> str: ...

    def make_scorer(
        self, gallery: Gallery, device: DeviceCohort | bool | None = True
    ) -> Scorer: ...


@dataclass
class Background:
    """The background's windows in stream order: ``(T, D)`` embeddings, NaN rows where the gate
    found silence; recordings are separated by ``m`` NaN rows (the rule starts afresh), which
    ``separators`` counts: they are not windows the device would hear."""

    windows: np.ndarray
    description: str
    seconds: float
    separators: int = 0

    @property
    def heard(self) -> int:
        """Windows the device would have heard: active or gated, separators not counted."""
        return len(self.windows) - self.separators

    @property
    def active(self) -> np.ndarray:
        rows: np.ndarray = self.windows[np.isfinite(self.windows[:, 0])]
        return rows


def _label_columns(scorer: Any, queries: np.ndarray) -> np.ndarray:
    if not len(queries):
        return np.zeros((0, len(scorer.labels)))
    return np.asarray(scorer.scores(queries), dtype=np.float64)


def _own_scores(
    runtime: CalibrationTarget, templates: np.ndarray, cohort: DeviceCohort | None
) -> Any:
    ids = [f"{i:04d}" for i in range(len(templates))]
    own = runtime.make_scorer(Gallery.from_templates(templates, ids), cohort)
    return own.scores(templates)


def _best_label(scores: np.ndarray) -> np.ndarray:
    """Each row's best score over the labels (NaN rows stay NaN): what the device decides on."""
    out = np.full(len(scores), np.nan)
    if scores.shape[1]:
        finite = np.isfinite(scores[:, 0])
        out[finite] = scores[finite].max(axis=1)
    return out


def _others_best(runtime: CalibrationTarget, scorer: Any, extra: np.ndarray) -> np.ndarray:
    """Impostors that are not a stream: each enrolled template's best score over the *other*
    labels, and each row of ``extra`` (the bundle's cohort) over every label."""
    gallery = runtime.gallery
    cols = _label_columns(scorer, gallery.embeddings)
    owner = np.array([gallery.labels.index(x) for x in gallery.template_labels], dtype=np.int64)
    if len(owner):
        cols[np.arange(len(owner)), owner] = -np.inf
    parts = [cols.max(axis=1)] if cols.shape[1] > 1 else []
    if len(extra):
        parts.append(_best_label(_label_columns(scorer, extra)))
    return np.concatenate(parts) if parts else np.zeros(0)


def _bundle_cohort(runtime: CalibrationTarget) -> np.ndarray:
    if runtime.bundle_cohort is not None:
        return np.asarray(runtime.bundle_cohort, dtype=np.float32)
    if runtime.embedder.manifest.cohort is not None:
        from edgesiam.model.bundle import load_cohort

        shipped = load_cohort(runtime.config.bundle, runtime.embedder.manifest)
        if shipped is not None:
            return np.asarray(shipped, dtype=np.float32)
    return np.zeros((0, runtime.gallery.dim), dtype=np.float32)


def calibrate_gallery(
    runtime: CalibrationTarget,
    background: Background,
    max_false_per_hour: float = DEFAULT_FALSE_PER_HOUR,
    rejected: DeviceCohort | None = None,
) -> tuple[Calibration, DeviceCohort]:
    """Per-label thresholds for ``runtime``'s gallery from ``background`` (and rejected windows).

    The device decides on each window's *best* label, so the false matches of all labels
    together come from the best-label score: one threshold is set on it for the whole target
    (the background's best-label scores in stream order, each template's best score over the
    other labels, the bundle's cohort), and each label starts from it, raised above the windows a
    reviewer rejected for that label.
    """
    gallery = runtime.gallery
    if not gallery.labels:
        raise DataError("the gallery has no enrolled label to calibrate", runtime.store.path)
    cohort = DeviceCohort(
        bounded(background.active),
        rejected.rejected if rejected is not None else np.zeros((0, gallery.dim), np.float32),
        list(rejected.rejected_labels) if rejected is not None else [],
    )
    scorer = runtime.make_scorer(gallery, cohort)
    finite = np.isfinite(background.windows[:, 0])
    seq = np.full((len(background.windows), len(gallery.labels)), np.nan)
    seq[finite] = _label_columns(scorer, background.windows[finite])
    rule = runtime.matcher.decider.rule
    hop_s = runtime.embedder.hop / runtime.format.sample_rate
    device = calibrate_label(
        "*",
        _best_label(seq),
        _others_best(runtime, scorer, _bundle_cohort(runtime)),
        rule,
        hop_s,
        max_false_per_hour,
        cosine=runtime.score_kind.endswith("cosine"),
        active_fraction=int(finite.sum()) / max(1, background.heard),
    )
    labels = {
        label: _for_label(runtime, scorer, cohort, label, device, seq[:, j])
        for j, label in enumerate(gallery.labels)
    }
    calibration = Calibration(
        max_false_per_hour=max_false_per_hour,
        score=runtime.score_kind,
        hop_s=hop_s,
        rule={"n_of": rule.n_of, "m": rule.m, "refractory_s": rule.refractory_s},
        background={
            "source": background.description,
            "seconds": background.seconds,
            "windows": background.heard,
            "active": int(finite.sum()),
        },
        labels=labels,
    )
    return calibration, cohort


def _for_label(
    runtime: CalibrationTarget,
    scorer: Any,
    cohort: DeviceCohort,
    label: str,
    device: LabelCalibration,
    column: np.ndarray,
) -> LabelCalibration:
    """``label``'s share of the device's calibration: its threshold (raised above its rejected
    windows), its own highest background score, and its leave-one-out hit rate."""
    j = runtime.gallery.labels.index(label)
    above = _label_columns(scorer, cohort.rejected_for(label))[:, j]
    threshold = device.threshold
    if above.size:
        threshold = max(threshold, float(above.max()) + REJECT_MARGIN)
    own = column[np.isfinite(column)]
    hits = leave_one_out_hits(
        _own_scores(runtime, runtime.gallery.templates(label), cohort), threshold
    )
    return replace(
        device,
        label=label,
        threshold=threshold,
        highest_impostor=float(own.max()) if own.size else device.highest_impostor,
        hit_rate=hits,
        rejected=int(above.size),
    )


def recalibrate_label(
    runtime: CalibrationTarget, label: str, cohort: DeviceCohort | None = None
) -> LabelCalibration:
    """``label``'s threshold again from the device cohort (``cohort``, else the stored one):
    after a window was rejected, or a label enrolled after the calibration. The stored
    background is no longer in stream order, so the rule's share and the active fraction are
    the calibration's."""
    calibration = runtime.calibration
    cohort = cohort if cohort is not None else runtime.device_cohort
    if calibration is None or cohort is None:
        raise DataError(
            "this gallery has no calibration yet: run edgesiam calibrate first",
            runtime.calibration_store.path,
        )
    known = calibration.labels.get(label) or next(iter(calibration.labels.values()), None)
    rule = runtime.matcher.decider.rule
    scorer = runtime.make_scorer(runtime.gallery, cohort)
    columns = _label_columns(scorer, cohort.background)
    device = calibrate_label(
        "*",
        _best_label(columns),
        _others_best(runtime, scorer, _bundle_cohort(runtime)),
        rule,
        calibration.hop_s,
        calibration.max_false_per_hour,
        cosine=runtime.score_kind.endswith("cosine"),
        share=None if known is None else known.rule_share,
        active_fraction=None if known is None else known.active_fraction,
    )
    j = runtime.gallery.labels.index(label)
    return _for_label(runtime, scorer, cohort, label, device, columns[:, j])


def _base_threshold(runtime: CalibrationTarget, label: str) -> float:
    """The label's threshold without any calibration or value set over MQTT (config, bundle)."""
    from edgesiam.runtime.threshold_store import SetThresholds, resolve_thresholds

    plain = resolve_thresholds(runtime.matching, runtime.window_at_fmr, SetThresholds())
    return plain.thresholds.for_label(label)


def _rejected_only(
    runtime: CalibrationTarget, cohort: DeviceCohort, label: str
) -> LabelCalibration | None:
    """Without a background: the label's plain threshold, raised above its rejected windows."""
    rejected = cohort.rejected_for(label)
    if not len(rejected):
        return None
    j = runtime.gallery.labels.index(label)
    above = _label_columns(runtime.make_scorer(runtime.gallery, cohort), rejected)[:, j]
    threshold = max(_base_threshold(runtime, label), float(above.max()) + REJECT_MARGIN)
    own = _own_scores(runtime, runtime.gallery.templates(label), cohort)
    return LabelCalibration(
        label=label,
        threshold=threshold,
        window_rate=0.0,
        rule_share=1.0,
        background_windows=0,
        impostor_trials=len(above),
        highest_impostor=float(above.max()),
        hit_rate=leave_one_out_hits(own, threshold),
        rejected=len(above),
    )


def review_calibration(runtime: CalibrationTarget, cohort: DeviceCohort, label: str) -> Calibration:
    """The gallery's calibration after ``label``'s rejected windows changed (in ``cohort``):
    recalibrated from the stored background when there is one, else its plain threshold raised
    above every rejected window."""
    if label not in runtime.gallery.labels:
        raise DataError(f"no label '{label}' is enrolled", runtime.store.path)
    old = runtime.calibration
    if old is not None and len(cohort.background) >= MIN_TAIL:
        found: LabelCalibration | None = recalibrate_label(runtime, label, cohort)
    else:
        found = _rejected_only(runtime, cohort, label)
    labels = dict(old.labels) if old is not None else {}
    if found is None:
        labels.pop(label, None)
    else:
        labels[label] = found
    if old is not None:
        return replace(old, labels=labels)
    rule = runtime.matcher.decider.rule
    return Calibration(
        max_false_per_hour=DEFAULT_FALSE_PER_HOUR,
        score=runtime.score_kind,
        hop_s=runtime.embedder.hop / runtime.format.sample_rate,
        rule={"n_of": rule.n_of, "m": rule.m, "refractory_s": rule.refractory_s},
        background={"source": None, "seconds": 0.0, "windows": 0, "active": 0},
        labels=labels,
    )

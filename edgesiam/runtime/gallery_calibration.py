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
from edgesiam.core.decision import DecisionRule
from edgesiam.core.matching import Gallery
from edgesiam.core.normalise import NormalisedScorer
from edgesiam.core.stream import StreamMatcher
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
    ) -> Gallery | NormalisedScorer: ...


@dataclass
class Background:
    """The background's windows in stream order: ``(T, D)`` embeddings, NaN rows where the gate
    found silence; recordings are separated by ``m`` NaN rows (the rule starts afresh)."""

    windows: np.ndarray
    description: str
    seconds: float

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


def calibrate_gallery(
    runtime: CalibrationTarget,
    background: Background,
    max_false_per_hour: float = DEFAULT_FALSE_PER_HOUR,
    rejected: DeviceCohort | None = None,
) -> tuple[Calibration, DeviceCohort]:
    """Per-label thresholds for ``runtime``'s gallery from ``background`` (and rejected windows)."""
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
    bundle_cohort = runtime.bundle_cohort
    labels: dict[str, LabelCalibration] = {}
    for j, label in enumerate(gallery.labels):
        labels[label] = _calibrate_one(
            runtime, cohort, label, seq[:, j], rule, hop_s, max_false_per_hour, bundle_cohort
        )
    calibration = Calibration(
        max_false_per_hour=max_false_per_hour,
        score=runtime.score_kind,
        hop_s=hop_s,
        rule={"n_of": rule.n_of, "m": rule.m, "refractory_s": rule.refractory_s},
        background={
            "source": background.description,
            "seconds": background.seconds,
            "windows": len(background.windows),
            "active": int(finite.sum()),
        },
        labels=labels,
    )
    return calibration, cohort


def _calibrate_one(
    runtime: CalibrationTarget,
    cohort: DeviceCohort,
    label: str,
    stream: np.ndarray,
    rule: DecisionRule,
    hop_s: float,
    max_false_per_hour: float,
    bundle_cohort: np.ndarray | None,
    known: LabelCalibration | None = None,
) -> LabelCalibration:
    gallery = runtime.gallery
    scorer = runtime.make_scorer(gallery, cohort)
    j = gallery.labels.index(label)
    others = np.array([lab != label for lab in gallery.template_labels], dtype=bool)
    parts = [gallery.embeddings[others], cohort.rejected_for(label)]
    if bundle_cohort is not None:
        parts.append(np.asarray(bundle_cohort, dtype=np.float32))
    elif runtime.embedder.manifest.cohort is not None:
        from edgesiam.model.bundle import load_cohort

        shipped = load_cohort(runtime.config.bundle, runtime.embedder.manifest)
        if shipped is not None:
            parts.append(shipped)
    extra = _label_columns(scorer, np.concatenate(parts))[:, j]
    above = _label_columns(scorer, cohort.rejected_for(label))[:, j]
    found = calibrate_label(
        label,
        stream,
        extra,
        rule,
        hop_s,
        max_false_per_hour,
        cosine=runtime.score_kind == "cosine",
        share=None if known is None else known.rule_share,
        active_fraction=None if known is None else known.active_fraction,
        above=above,
    )
    hits = leave_one_out_hits(
        _own_scores(runtime, gallery.templates(label), cohort), found.threshold
    )
    return LabelCalibration(**{**found.__dict__, "hit_rate": hits})


def recalibrate_label(
    runtime: CalibrationTarget, label: str, cohort: DeviceCohort | None = None
) -> LabelCalibration:
    """``label``'s threshold again from the device cohort (``cohort``, else the stored one):
    after a window was rejected, or a label enrolled after the calibration."""
    calibration = runtime.calibration
    cohort = cohort if cohort is not None else runtime.device_cohort
    if calibration is None or cohort is None:
        raise DataError(
            "this gallery has no calibration yet: run edgesiam calibrate first",
            runtime.calibration_store.path,
        )
    known = calibration.labels.get(label)
    rule = runtime.matcher.decider.rule
    scorer = runtime.make_scorer(runtime.gallery, cohort)
    j = runtime.gallery.labels.index(label)
    stream = _label_columns(scorer, cohort.background)[:, j]
    return _calibrate_one(
        runtime,
        cohort,
        label,
        stream,
        rule,
        calibration.hop_s,
        calibration.max_false_per_hour,
        runtime.bundle_cohort,
        known,
    )


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

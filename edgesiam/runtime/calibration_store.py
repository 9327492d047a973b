"""A gallery's calibration on disk: per-label thresholds for false matches per hour, and the device's
impostor cohort they rest on.

``edgesiam calibrate`` writes two files beside the gallery (``gallery.npz`` →
``gallery.calibration.json`` and ``gallery.cohort.npz``), both bound to the bundle's deployed model
and written atomically (:func:`~edgesiam.runtime.gallery_store.atomic_write`)::

    {"format": "edgesiam-calibration", "version": 1, "bundle_sha256": "…", "bundle_name": "…",
     "updated": "<UTC ISO 8601>", "max_false_per_hour": 0.0417, "score": "cosine",
     "hop_s": 0.5, "rule": {"n_of": 2, "m": 3, "refractory_s": 2.0},
     "background": {"source": "…", "seconds": 300.0, "windows": 600, "active": 540},
     "labels": {"alice": {"threshold": 0.87, "window_rate": 1e-5, "rule_share": 0.4,
                          "background_windows": 540, "impostor_trials": 760,
                          "highest_impostor": 0.81, "hit_rate": 1.0, "rejected": 0}}}

``gallery.cohort.npz`` holds ``background`` ``(K, D)`` float32 (active background windows, at
most :data:`MAX_COHORT`, evenly spaced in time) and the windows a reviewer rejected:
``rejected`` ``(R, D)``, ``rejected_labels`` and ``rejected_ids`` (``cmd/reject`` adds one, the
label's threshold is recomputed; ``cmd/unreject`` drops it again).

A calibration for another model, or for another score (``matching.score_norm``), is ignored with a
logged reason: a threshold is never applied to scores it was not calibrated for.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from edgesiam.core.calibration import LabelCalibration
from edgesiam.core.codec import embedding_id
from edgesiam.errors import DataError
from edgesiam.runtime.gallery_store import atomic_write
from edgesiam.runtime.model_file import ModelFile

__all__ = [
    "MAX_COHORT",
    "Calibration",
    "CalibrationStore",
    "DeviceCohort",
    "calibration_path",
    "cohort_path",
    "embedding_id",
]

log = logging.getLogger("edgesiam.runtime")

FORMAT: Final = "edgesiam-calibration"
VERSION: Final = 1
MAX_COHORT: Final = 4000
"""Most background windows kept in the device's cohort (64-d: 1 MB)."""

Float32Array = npt.NDArray[np.float32]


def calibration_path(gallery_path: Path) -> Path:
    return gallery_path.with_name(f"{gallery_path.stem}.calibration.json")


def cohort_path(gallery_path: Path) -> Path:
    return gallery_path.with_name(f"{gallery_path.stem}.cohort.npz")


def bounded(rows: npt.ArrayLike, limit: int = MAX_COHORT) -> Float32Array:
    """At most ``limit`` rows, evenly spaced (the background's spread in time is kept)."""
    x = np.asarray(rows, dtype=np.float32)
    if len(x) <= limit:
        return x
    return x[np.linspace(0, len(x) - 1, limit).round().astype(np.int64)]


@dataclass
class DeviceCohort:
    """Impostor embeddings the device has met: its background and the windows reviewers rejected."""

    background: Float32Array
    rejected: Float32Array
    rejected_labels: list[str] = field(default_factory=list)

    @property
    def rejected_ids(self) -> list[str]:
        return [embedding_id(e) for e in self.rejected]

    def rejected_for(self, label: str) -> Float32Array:
        keep = np.array([lab == label for lab in self.rejected_labels], dtype=bool)
        return self.rejected[keep] if keep.size else self.rejected[:0]

    def impostors(self) -> Float32Array:
        """Every impostor embedding (for score normalisation)."""
        return np.concatenate([self.background, self.rejected]).astype(np.float32)


@dataclass
class Calibration:
    """What ``edgesiam calibrate`` found, as kept in the calibration file."""

    max_false_per_hour: float
    score: str
    hop_s: float
    rule: dict[str, Any]
    background: dict[str, Any]
    labels: dict[str, LabelCalibration]
    path: Path | None = None
    updated: str = ""

    def thresholds(self) -> dict[str, float]:
        return {label: c.threshold for label, c in self.labels.items()}

    def to_json(self) -> dict[str, Any]:
        """The file's body (the header is the store's)."""
        return {
            "max_false_per_hour": self.max_false_per_hour,
            "score": self.score,
            "hop_s": self.hop_s,
            "rule": self.rule,
            "background": self.background,
            "labels": {
                label: {k: v for k, v in asdict(c).items() if k != "label"}
                for label, c in sorted(self.labels.items())
            },
        }


def _parse(data: dict[str, Any], path: Path) -> Calibration:
    labels = {
        str(label): LabelCalibration(label=str(label), **entry)
        for label, entry in dict(data["labels"]).items()
    }
    return Calibration(
        max_false_per_hour=float(data["max_false_per_hour"]),
        score=str(data["score"]),
        hop_s=float(data["hop_s"]),
        rule=dict(data["rule"]),
        background=dict(data["background"]),
        labels=labels,
        path=path,
        updated=str(data.get("updated", "")),
    )


class CalibrationStore:
    """The calibration and cohort files of one gallery, bound to one model."""

    def __init__(self, gallery_path: Path, bundle_sha256: str, bundle_name: str | None = None):
        self.path = calibration_path(Path(gallery_path))
        self.cohort_file = cohort_path(Path(gallery_path))
        self.bundle_sha256 = bundle_sha256
        self.bundle_name = bundle_name
        self._file = ModelFile(self.path, FORMAT, VERSION, bundle_sha256, bundle_name)

    def __repr__(self) -> str:
        return f"CalibrationStore({str(self.path)!r})"

    def load(self, score: str | None = None) -> Calibration | None:
        """The calibration, or None (no file, another model's or score's, or unreadable)."""
        if not self.path.exists():
            return None
        try:
            data = self._file.read()
            found = _parse(data, self.path)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            log.error("%s: ignored, the calibration cannot be read (%s)", self.path, exc)
            return None
        if not self._file.is_for_this_model(data):
            log.warning(
                "%s: calibrated for another model (%s), ignored: run edgesiam calibrate again",
                self.path,
                data.get("bundle_name") or "unnamed",
            )
            return None
        if score is not None and found.score != score:
            log.warning(
                "%s: calibrated for %s scores but the run scores %s (matching.score_norm), "
                "ignored: run edgesiam calibrate again",
                self.path,
                found.score,
                score,
            )
            return None
        return found

    def save(self, calibration: Calibration) -> Calibration:
        self._file.write(calibration.to_json(), "calibration")
        calibration.path = self.path
        return calibration

    def load_cohort(self, dim: int) -> DeviceCohort | None:
        """The device's cohort, or None when there is none (or it is for another model)."""
        if not self.cohort_file.exists():
            return None
        try:
            with np.load(self.cohort_file, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                cohort = DeviceCohort(
                    np.asarray(z["background"], dtype=np.float32),
                    np.asarray(z["rejected"], dtype=np.float32).reshape(-1, dim),
                    [str(s) for s in z["rejected_labels"]],
                )
        except (OSError, ValueError, KeyError) as exc:
            log.error("%s: ignored, the cohort cannot be read (%s)", self.cohort_file, exc)
            return None
        if header.get("bundle_sha256") != self.bundle_sha256 or cohort.background.shape[1:] != (
            dim,
        ):
            log.warning("%s: made with another model, ignored", self.cohort_file)
            return None
        return cohort

    def save_cohort(self, cohort: DeviceCohort) -> None:
        header = json.dumps({"bundle_sha256": self.bundle_sha256, "bundle_name": self.bundle_name})
        labels = np.array(cohort.rejected_labels, dtype=np.str_)
        if labels.size == 0:
            labels = np.zeros(0, dtype="<U1")

        def write(fh: IO[bytes]) -> None:
            buffer = io.BytesIO()
            np.savez(
                buffer,
                header=np.array(header),
                background=bounded(cohort.background),
                rejected=np.asarray(cohort.rejected, dtype=np.float32),
                rejected_labels=labels,
            )
            fh.write(buffer.getvalue())

        try:
            atomic_write(self.cohort_file, write)
        except OSError as exc:
            raise DataError(
                f"cannot save the cohort ({exc}); nothing changed", self.cohort_file
            ) from exc

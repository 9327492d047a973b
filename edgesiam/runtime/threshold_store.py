"""The thresholds a device uses, where each one comes from, and those set over MQTT kept on disk.

A label's threshold comes from, in order of precedence:

1. ``cmd/threshold`` over MQTT (for that label, or as the default), saved in the thresholds file;
2. ``edgesiam calibrate`` (per label, for a target in false matches per hour), saved in
   ``gallery.calibration.json`` (:mod:`edgesiam.runtime.calibration_store`);
3. ``matching.per_label`` in the runtime config;
4. the default: set over MQTT, else ``matching.threshold`` (the config or ``run --threshold``),
   else the bundle's calibrated window threshold at ``matching.target_fmr``.

**The thresholds file** sits beside the gallery (``gallery.npz`` → ``gallery.thresholds.json``)
and, like the gallery, is bound to the bundle's deployed model (cosines of one model mean nothing
to another) and written atomically (:func:`~edgesiam.runtime.gallery_store.atomic_write`)::

    {"format": "edgesiam-thresholds", "version": 1, "bundle_sha256": "…", "bundle_name": "…",
     "updated": "<UTC ISO 8601>", "default": 0.9 or null, "per_label": {"bell": 0.95}}

A file for another model, or one that cannot be read, is ignored with a logged reason (the
config's thresholds are used): a threshold is never silently applied to the wrong model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from edgesiam.core.matching import Thresholds, threshold_for
from edgesiam.model.bundle import fmr_key
from edgesiam.runtime.model_file import ModelFile

__all__ = [
    "SetThresholds",
    "ThresholdSources",
    "ThresholdStore",
    "resolve_thresholds",
    "thresholds_path",
]

log = logging.getLogger("edgesiam.runtime")

FORMAT: Final = "edgesiam-thresholds"
VERSION: Final = 1


def thresholds_path(gallery_path: Path) -> Path:
    """Where the thresholds set over MQTT are kept: beside the gallery, named after it."""
    return gallery_path.with_name(f"{gallery_path.stem}.thresholds.json")


@dataclass(frozen=True)
class SetThresholds:
    """Thresholds set over MQTT: a default (None: not set) and per-label values."""

    default: float | None = None
    per_label: Mapping[str, float] = field(default_factory=dict)
    path: Path | None = None

    @property
    def empty(self) -> bool:
        return self.default is None and not self.per_label


@dataclass(frozen=True)
class ThresholdSources:
    """The thresholds in force and, for the default and each label, where it comes from."""

    thresholds: Thresholds
    default_source: str
    label_sources: Mapping[str, str]

    def source_of(self, label: str) -> str:
        return self.label_sources.get(label, "the default")

    def report(self, labels: Sequence[str]) -> list[str]:
        """One line for the default and one per enrolled or configured label (for ``run``)."""
        names = sorted(set(labels) | set(self.label_sources))
        width = max([len("(default)"), *(len(n) for n in names)])
        lines = [f"  {'(default)':<{width}}  {self.thresholds.default:.4f}  {self.default_source}"]
        for name in names:
            note = "" if name in labels else " (not enrolled)"
            lines.append(
                f"  {name:<{width}}  {self.thresholds.for_label(name):.4f}  "
                f"{self.source_of(name)}{note}"
            )
        return lines


def resolve_thresholds(
    matching: Any,
    at_fmr: Mapping[str, float],
    saved: SetThresholds,
    calibrated: Mapping[str, float] | None = None,
    calibrated_by: str = "edgesiam calibrate",
) -> ThresholdSources:
    """Combine a ``MatchingConfig``, the bundle's window thresholds, a calibration's per-label
    thresholds (``calibrated``, described by ``calibrated_by``) and those set over MQTT."""
    where = f" (saved in {saved.path})" if saved.path is not None else ""
    if saved.default is not None:
        default, default_source = saved.default, f"set over MQTT{where}"
    elif matching.threshold is not None:
        default, default_source = float(matching.threshold), "matching.threshold / --threshold"
    else:
        default = threshold_for(at_fmr, matching.target_fmr)
        default_source = (
            f"bundle calibration (window vs template) at target FMR {fmr_key(matching.target_fmr)}"
        )
    per_label: dict[str, float] = {}
    sources: dict[str, str] = {}
    for label, value in dict(matching.per_label).items():
        per_label[label], sources[label] = float(value), "matching.per_label (config)"
    for label, value in dict(calibrated or {}).items():
        per_label[label], sources[label] = float(value), calibrated_by
    for label, value in dict(saved.per_label).items():
        per_label[label], sources[label] = float(value), f"set over MQTT{where}"
    return ThresholdSources(Thresholds(default, per_label), default_source, sources)


def _finite_cosine(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -1.0 <= value <= 1.0
    )


class ThresholdStore:
    """The thresholds file of one gallery, bound to one model (``bundle_sha256``)."""

    def __init__(self, path: Path, bundle_sha256: str, bundle_name: str | None = None) -> None:
        self.path = Path(path)
        self.bundle_sha256 = bundle_sha256
        self.bundle_name = bundle_name
        self._file = ModelFile(self.path, FORMAT, VERSION, bundle_sha256, bundle_name)

    def __repr__(self) -> str:
        return f"ThresholdStore({str(self.path)!r})"

    def load(self) -> SetThresholds:
        """What was set over MQTT, or nothing (no file, another model's, or unreadable)."""
        if not self.path.exists():
            return SetThresholds()
        try:
            data = self._file.read()
            saved = self._parse(data)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.error("%s: ignored, the config's thresholds are used (%s)", self.path, exc)
            return SetThresholds()
        if not self._file.is_for_this_model(data):
            log.warning(
                "%s: set for another model (%s, sha256 %.12s…), ignored: the config's thresholds "
                "are used",
                self.path,
                data.get("bundle_name") or "unnamed",
                str(data.get("bundle_sha256")),
            )
            return SetThresholds()
        return saved

    def _parse(self, data: dict[str, Any]) -> SetThresholds:
        default = data.get("default")
        per_label = data.get("per_label")
        if default is not None and not _finite_cosine(default):
            raise ValueError(f"default: {default!r} is not a cosine in [-1, 1]")
        if not isinstance(per_label, dict) or not all(
            isinstance(k, str) and _finite_cosine(v) for k, v in per_label.items()
        ):
            raise ValueError("per_label: expected label → cosine in [-1, 1]")
        return SetThresholds(
            None if default is None else float(default),
            {k: float(v) for k, v in per_label.items()},
            self.path,
        )

    def save(self, saved: SetThresholds) -> SetThresholds:
        """Write (atomically) what is set over MQTT; returns it bound to this file."""
        body = {"default": saved.default, "per_label": dict(sorted(saved.per_label.items()))}
        self._file.write(body, "thresholds")
        return SetThresholds(saved.default, dict(saved.per_label), self.path)

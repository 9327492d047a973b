"""The window-level thresholds ``edgesiam run`` would use, measured on a dataset folder.

A device scores windows, not recordings: each window of the stream that passes the energy gate is
compared with every enrolled label's best template. Recording-against-recording thresholds (what
``eval``'s EER threshold is) are far from what a live stream needs, so ``edgesiam eval`` also
measures this: every recording of the folder becomes a template (docs/ARCHITECTURE.md, contract 3), and every active
window of every recording is scored against each label's best template, its own recording left
out (:func:`~edgesiam.core.metrics.window_template_trials`). The threshold for a target
false-match rate is the one the runtime's ``matching.target_fmr`` / ``run --target-fmr`` stands
for (a bundle's manifest holds the same measure from the export's held-out set).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np

from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.embedding import l2_normalize, recording_embedding
from edgesiam.core.gate import EnergyGate
from edgesiam.core.metrics import equal_error_rate, threshold_at_fmr, window_template_trials
from edgesiam.core.windowing import frame
from edgesiam.data.readers import DatasetInfo, iter_recordings
from edgesiam.errors import DataError
from edgesiam.model.bundle import FMR_TARGETS, fmr_key
from edgesiam.model.embedders import embed_windows

__all__ = ["WindowThresholds", "window_thresholds"]

MAX_TRIALS: Final = 5_000_000
"""Windows are subsampled (seeded) so that windows × recordings stays under this."""


@dataclass(frozen=True)
class WindowThresholds:
    """Thresholds at target false-match rates for window-vs-template scores, and their support."""

    windows: int
    gated: int
    genuine: int
    impostor: int
    eer: float | None
    eer_threshold: float | None
    at_fmr: dict[str, float]
    supported: dict[str, bool]

    def to_dict(self) -> dict[str, Any]:
        return {"trials": "window-vs-template", **asdict(self)}

    def describe(self, target_fmr: float, bundle_value: float | None = None) -> list[str]:
        """Lines for the eval report; the target's line says how to use it with ``run``."""
        lines = [
            "window-level thresholds, as `edgesiam run` scores a stream (each active window "
            "against each label's best template):",
            f"  {self.windows} windows ({self.gated} gated as silent), {self.genuine} genuine and "
            f"{self.impostor} impostor trials",
        ]
        target = fmr_key(target_fmr)
        for key, value in self.at_fmr.items():
            note = (
                ""
                if self.supported[key]
                else (f"  (not backed: needs >= {int(np.ceil(3 / float(key)))} impostor trials)")
            )
            arrow = (
                f"  <- target FMR {key} on this data: run --threshold {value:.4f}"
                if key == target
                else ""
            )
            lines.append(f"  FMR {key:<7} {value:.4f}{arrow}{note}")
        if self.eer is not None and self.eer_threshold is not None:
            lines.append(f"  EER {100 * self.eer:.2f}% at {self.eer_threshold:.4f}")
        if bundle_value is not None:
            lines.append(
                f"  the bundle's own calibration at FMR {target}: {bundle_value:.4f} "
                "(run --target-fmr uses that one)"
            )
        return lines


def _active_windows(
    embedder: DeviceEmbedder, x: np.ndarray, gate: EnergyGate
) -> tuple[np.ndarray, np.ndarray]:
    """All windows' embeddings of one recording, and which of them the gate lets through."""
    windows = frame(x, embedder.window, embedder.hop)
    gate.reset()
    return embed_windows(embedder, windows), gate.active_mask(windows)


def window_thresholds(
    embedder: DeviceEmbedder,
    info: DatasetInfo,
    *,
    gate: EnergyGate | None = None,
    targets: tuple[float, ...] = FMR_TARGETS,
    on_error: Literal["fail", "skip"] = "fail",
    seed: int = 0,
) -> WindowThresholds:
    """Measure the window-level thresholds of ``embedder`` on the recordings of ``info``.

    ``gate`` defaults to the runtime's (on for audio at -45 dBFS, off for sensors).
    """
    gate = gate if gate is not None else EnergyGate.for_modality(embedder.modality)
    rate = embedder.sample_rate if info.modality == "audio" else None
    templates: list[np.ndarray] = []
    labels: list[str] = []
    kept: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    total = 0
    for rec, x in iter_recordings(info, sample_rate=rate, on_error=on_error, progress=False):
        embedded, active = _active_windows(embedder, x, gate)
        templates.append(recording_embedding(embedded))
        labels.append(rec.label)
        total += len(active)
        kept.append(l2_normalize(embedded[active], axis=1))
        owners.append(np.full(int(active.sum()), len(labels) - 1, dtype=np.int64))
    windows = np.concatenate(kept) if kept else np.zeros((0, 1), dtype=np.float32)
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    if len(set(labels)) < 2 or not len(windows):
        raise DataError("window thresholds need active windows of at least two labels", info.root)
    limit = max(1, MAX_TRIALS // len(templates))
    if len(windows) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(windows), limit, replace=False))
        windows, owner = windows[keep], owner[keep]
    genuine, impostor = window_template_trials(windows, owner, np.stack(templates), labels)
    eer = equal_error_rate(genuine, impostor) if genuine.size and impostor.size else None
    return WindowThresholds(
        windows=total,
        gated=total - sum(len(o) for o in owners),
        genuine=int(genuine.size),
        impostor=int(impostor.size),
        eer=None if eer is None else eer[0],
        eer_threshold=None if eer is None else eer[1],
        at_fmr={fmr_key(t): threshold_at_fmr(impostor, t) for t in targets},
        supported={fmr_key(t): bool(impostor.size * t >= 3.0) for t in targets},
    )

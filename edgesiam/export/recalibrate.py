"""Re-calibrate a bundle's thresholds for the normalised score without retraining or re-converting.

``python -m edgesiam.export.recalibrate BUNDLE --heldout DIR`` embeds every window of the held-out
recordings with the bundle's own int8 model (as the export does), scores each window against
every other recording, AS-normalised with the bundle's cohort, and writes the thresholds of the
normalised score into the manifest as ``cohort.window_thresholds``. Only ``manifest.json`` changes:
``model.tflite`` stays byte-identical, so galleries enrolled with the bundle stay valid.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgesiam.core.embedding import l2_normalize, recording_embedding
from edgesiam.core.normalise import window_recording_trials
from edgesiam.core.windowing import frame
from edgesiam.data.readers import iter_recordings, scan_dataset
from edgesiam.errors import BundleError
from edgesiam.export.thresholds import MAX_WINDOW_TRIALS, threshold_set
from edgesiam.model.bundle import ThresholdSet, load_cohort, load_manifest, write_manifest
from edgesiam.model.embedders import embed_windows
from edgesiam.model.interpreters import load_model

__all__ = ["normalised_window_thresholds", "recalibrate_bundle"]


def _heldout_windows(
    bundle: Path, heldout: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Window embeddings, their recording, recording embeddings and label codes."""
    embedder = load_model(bundle)
    info = scan_dataset(heldout)
    rate = embedder.sample_rate if info.modality == "audio" else None
    windows: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    recs: list[np.ndarray] = []
    labels: list[str] = []
    for rec, x in iter_recordings(info, sample_rate=rate, progress=False):
        w = l2_normalize(embed_windows(embedder, frame(x, embedder.window, embedder.hop)), axis=1)
        windows.append(w)
        owners.append(np.full(len(w), len(recs), dtype=np.int64))
        recs.append(recording_embedding(w))
        labels.append(rec.label)
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    return np.concatenate(windows), np.concatenate(owners), np.stack(recs), codes


def normalised_window_thresholds(
    bundle: Path, heldout: Path, cohort: np.ndarray, top_k: int, seed: int = 0
) -> ThresholdSet:
    """Thresholds of the AS-normalised window-vs-recording score on ``heldout``."""
    windows, owner, recs, codes = _heldout_windows(bundle, heldout)
    limit = max(1, MAX_WINDOW_TRIALS // max(1, len(recs)))
    if len(windows) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(windows), limit, replace=False))
        windows, owner = windows[keep], owner[keep]
    gen, imp = window_recording_trials(windows, owner, recs, codes, cohort, top_k)
    return threshold_set(gen, imp, "window-vs-recording", "adaptive-s-norm")


def recalibrate_bundle(bundle: Path, heldout: Path, seed: int = 0) -> ThresholdSet:
    """Write the normalised window thresholds into ``bundle``'s manifest; returns them."""
    manifest = load_manifest(bundle)
    cohort = load_cohort(bundle, manifest)
    if cohort is None or manifest.cohort is None:
        raise BundleError("the bundle ships no score-normalisation cohort", bundle)
    found = normalised_window_thresholds(bundle, heldout, cohort, manifest.cohort.top_k, seed)
    info = manifest.cohort.model_copy(update={"window_thresholds": found})
    write_manifest(bundle, manifest.model_copy(update={"cohort": info}))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgesiam.export.recalibrate",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("bundle", metavar="BUNDLE", type=Path)
    parser.add_argument("--heldout", required=True, metavar="DATA_DIR", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="seed of the window subsampling")
    args = parser.parse_args(argv)
    found = recalibrate_bundle(args.bundle, args.heldout, args.seed)
    rates = ", ".join(f"FMR {k}: {v:.4f}" for k, v in found.at_fmr.items())
    print(f"{args.bundle}: normalised window thresholds {rates} (EER {100 * found.eer:.2f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

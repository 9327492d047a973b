"""Thresholds for the normalised score, recomputed into a bundle's manifest without touching the model."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgesiam.export.recalibrate import main
from edgesiam.model.bundle import load_cohort, load_manifest, sha256_file

SPEAKER = Path(__file__).resolve().parents[2] / "export" / "speaker"


def test_the_shipped_speaker_bundle_has_normalised_window_thresholds() -> None:
    manifest = load_manifest(SPEAKER)
    assert manifest.cohort is not None and manifest.cohort.window_thresholds is not None
    window = manifest.cohort.window_thresholds
    assert window.scores == "adaptive-s-norm" and window.trials == "window-vs-recording"
    assert window.at_fmr["0.01"] < window.at_fmr["0.001"] < window.at_fmr["0.0001"]
    cohort = load_cohort(SPEAKER, manifest)
    assert cohort is not None and cohort.shape == (manifest.cohort.size, manifest.embedding_dim)


def test_recalibrating_changes_the_manifest_only(tmp_path: Path, audio_heldout: Path) -> None:
    bundle = tmp_path / "speaker"
    shutil.copytree(SPEAKER, bundle)
    before = load_manifest(bundle)
    model = sha256_file(bundle / "model.tflite")
    assert main([str(bundle), "--heldout", str(audio_heldout)]) == 0
    after = load_manifest(bundle)  # verifies every file's hash
    assert sha256_file(bundle / "model.tflite") == model
    assert after.files["model.tflite"] == before.files["model.tflite"]
    assert after.cohort is not None and after.cohort.window_thresholds is not None
    found = after.cohort.window_thresholds
    assert found.genuine > 0 and found.impostor > 0
    assert (
        before.cohort is not None and found != before.cohort.window_thresholds
    )  # measured on the other data

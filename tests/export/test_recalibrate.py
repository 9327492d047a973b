"""Thresholds for the normalised score, recomputed into a bundle's manifest without touching the model."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgesiam.export.recalibrate import main
from edgesiam.model.bundle import load_cohort, load_manifest, sha256_file
from tests.support.signals import write_audio_dataset


def test_a_bundle_with_a_cohort_has_normalised_window_thresholds(cohort_audio_bundle: Path) -> None:
    manifest = load_manifest(cohort_audio_bundle)
    assert manifest.cohort is not None and manifest.cohort.window_thresholds is not None
    window = manifest.cohort.window_thresholds
    assert window.scores == "adaptive-s-norm" and window.trials == "window-vs-recording"
    assert window.at_fmr["0.01"] <= window.at_fmr["0.001"] <= window.at_fmr["0.0001"]
    cohort = load_cohort(cohort_audio_bundle, manifest)
    assert cohort is not None and cohort.shape == (manifest.cohort.size, manifest.embedding_dim)


def test_recalibrating_changes_the_manifest_only(tmp_path: Path, cohort_audio_bundle: Path) -> None:
    bundle = tmp_path / "speaker"
    shutil.copytree(cohort_audio_bundle, bundle)
    other = write_audio_dataset(tmp_path / "other" / "test", labels=5, per_label=5, seed=11)
    before = load_manifest(bundle)
    model = sha256_file(bundle / "model.tflite")
    assert main([str(bundle), "--heldout", str(other)]) == 0
    after = load_manifest(bundle)  # verifies every file's hash
    assert sha256_file(bundle / "model.tflite") == model
    assert after.files["model.tflite"] == before.files["model.tflite"]
    assert after.cohort is not None and after.cohort.window_thresholds is not None
    found = after.cohort.window_thresholds
    assert found.genuine > 0 and found.impostor > 0
    assert (
        before.cohort is not None and found != before.cohort.window_thresholds
    )  # measured on the other data

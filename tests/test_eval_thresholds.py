"""``edgesiam eval`` of a bundle measures its manifest's calibrated thresholds on the data given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgesiam.cli import main
from edgesiam.core.metrics import Trials
from edgesiam.evaluation import Report, threshold_rates, threshold_table
from edgesiam.model.bundle import ThresholdSet, load_manifest

EVENTS = Path(__file__).resolve().parents[1] / "export" / "events"


def pair_scores(npz: Path) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor cosine scores of every pair, from `edgesiam embed`'s output."""
    data = np.load(npz)
    emb, labels = data["embeddings"].astype(np.float64), data["labels"]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    i, j = np.triu_indices(len(labels), k=1)
    scores = np.sum(emb[i] * emb[j], axis=1)
    same = labels[i] == labels[j]
    return scores[same], scores[~same]


def test_eval_of_a_bundle_reports_the_realised_rates_of_its_thresholds(
    audio_heldout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    argv = [str(EVENTS), str(audio_heldout)]
    assert main(["eval", *argv, "-q", "--episodes", "20", "--no-baseline", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert main(["embed", *argv, "-q", "-o", str(tmp_path / "emb.npz")]) == 0
    genuine, impostor = pair_scores(tmp_path / "emb.npz")

    calibrated = load_manifest(EVENTS).thresholds.recording.at_fmr
    found = json.loads(out.read_text())["systems"]["edgesiam"]["thresholds"]
    assert list(found) == list(calibrated)
    for target, threshold in calibrated.items():
        row = found[target]
        assert row["threshold"] == threshold
        assert row["n_impostor"] == impostor.size and row["n_genuine"] == genuine.size
        assert row["fmr"] == pytest.approx(np.mean(impostor >= threshold), abs=1e-6)
        assert row["fnmr"] == pytest.approx(np.mean(genuine < threshold), abs=1e-6)
    assert "calibrated recording thresholds" in printed
    assert f"| {next(iter(calibrated))} | {next(iter(calibrated.values())):.3f} |" in printed


def test_threshold_rates_are_exact_on_known_scores() -> None:
    trials = Trials(genuine=np.array([0.9, 0.6, 0.3]), impostor=np.array([0.1, 0.5, 0.7, 0.2]))
    rates = threshold_rates(trials, {"0.01": 0.5, "0.001": 0.8})
    assert rates["0.01"] == {
        "threshold": 0.5,
        "fmr": 0.5,
        "fnmr": 1 / 3,
        "n_impostor": 4,
        "n_genuine": 3,
    }
    assert rates["0.001"]["fmr"] == 0.0 and rates["0.001"]["fnmr"] == 2 / 3
    table = threshold_table("model", rates)
    assert "| 0.01 | 0.500 | 50.00 | 50.0× | 33.3 |" in table
    assert "| 0.001 | 0.800 | 0.00 | 0.0× | 66.7 |" in table


def calibrated(scores: str) -> ThresholdSet:
    return ThresholdSet.model_validate(
        {
            "trials": "recording-vs-recording",
            "scores": scores,
            "genuine": 10,
            "impostor": 100,
            "eer": 0.1,
            "eer_threshold": 0.5,
            "at_fmr": {"0.01": 0.6},
            "supported": {"0.01": False},
        }
    )


def test_normalised_thresholds_are_not_applied_to_raw_cosine_scores() -> None:
    rng = np.random.default_rng(0)
    emb, labels = rng.normal(size=(12, 4)), [str(i % 3) for i in range(12)]
    report = Report.from_systems({"m": (emb, labels, None)}, episodes=5)
    report.check_thresholds("m", calibrated("adaptive-s-norm"))
    assert "thresholds" not in report.results["m"]
    assert any("adaptive-s-norm" in note for note in report.results["m"]["notes"])
    report.check_thresholds("m", calibrated("cosine"))
    assert report.results["m"]["thresholds"]["0.01"]["threshold"] == 0.6
    assert "calibrated recording thresholds" in report.markdown()

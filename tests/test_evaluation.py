"""The metrics report: evaluate, compare, JSON, plots and the Markdown table."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgesiam.core.metrics import trial_scores
from edgesiam.evaluation import (
    Report,
    compare,
    evaluate,
    markdown_table,
    plot_det,
    write_report,
)

KEYS = {
    "eer",
    "eer_threshold",
    "min_dcf",
    "way5_shot1",
    "way5_shot1_ci",
    "way5_shot5",
    "way5_shot5_ci",
    "loo_top1",
    "hard_eer",
    "n_recordings",
    "n_labels",
    "n_genuine",
    "n_impostor",
    "n_hard_impostor",
    "notes",
}


def clustered(
    n_labels: int = 10, per_label: int = 8, noise: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, list[str], list[str | None]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_labels, 24))
    emb = np.repeat(centres, per_label, axis=0) + noise * rng.normal(
        size=(n_labels * per_label, 24)
    )
    labels = [f"spk{i}" for i in range(n_labels) for _ in range(per_label)]
    groups: list[str | None] = [f"lang{i % 3}" for i in range(n_labels) for _ in range(per_label)]
    return emb.astype(np.float32), labels, groups


def test_evaluate_on_clustered_embeddings() -> None:
    emb, labels, groups = clustered()
    m = evaluate(emb, labels, groups, episodes=100)
    assert set(m) == KEYS
    assert m["eer"] < 0.02 and m["min_dcf"] < 0.2 and m["hard_eer"] < 0.05
    assert m["way5_shot1"] > 0.95 and m["way5_shot5"] > 0.95 and m["loo_top1"] > 0.95
    assert (m["n_recordings"], m["n_labels"]) == (80, 10)
    assert m["n_genuine"] == 10 * 28 and m["n_impostor"] == 80 * 79 // 2 - 280
    assert 0 < m["n_hard_impostor"] < m["n_impostor"]
    assert m["notes"] == []
    json.dumps(m, allow_nan=False)


def test_evaluate_says_why_a_metric_is_missing() -> None:
    emb, labels, _ = clustered(n_labels=4, per_label=3)
    m = evaluate(emb, labels, episodes=10)
    assert set(m) == KEYS
    assert m["way5_shot1"] is None and m["way5_shot5"] is None and m["hard_eer"] is None
    assert m["eer"] is not None and m["loo_top1"] is not None
    notes = " ".join(m["notes"])
    assert "way5_shot1" in notes and "way5_shot5" in notes and "no groups" in notes
    json.dumps(m, allow_nan=False)


def test_evaluate_with_no_genuine_trial_is_nan_free() -> None:
    m = evaluate(np.eye(6), [f"l{i}" for i in range(6)], episodes=10)
    assert m["eer"] is None and m["min_dcf"] is None and m["loo_top1"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in m.values())


def test_compare_and_report_agree_and_are_seeded() -> None:
    good = clustered()
    rng = np.random.default_rng(1)
    noisy = (rng.normal(size=good[0].shape), good[1], good[2])
    systems = {"encoder": good, "baseline": noisy}
    results = compare(systems, episodes=50)
    assert list(results) == ["encoder", "baseline"]
    assert results["encoder"]["eer"] < results["baseline"]["eer"]
    report = Report.from_systems(systems, episodes=50)
    assert report.results == results
    assert set(report.trials) == {"encoder", "baseline"}


def test_write_report_writes_json_and_pngs(tmp_path: Path) -> None:
    matplotlib_image = pytest.importorskip("matplotlib.image")
    good = clustered()
    noisy = (np.random.default_rng(2).normal(size=good[0].shape), good[1], None)
    report = Report.from_systems({"siamese conv": good, "mfcc/stats": noisy}, episodes=20)
    json_path = tmp_path / "out" / "nested" / "report.json"
    written = report.write(json_path=json_path, plots_dir=tmp_path / "plots" / "run1")
    assert json_path in written
    document = json.loads(json_path.read_text())
    assert set(document["systems"]) == {"siamese conv", "mfcc/stats"}
    assert "fractions" in document["units"]
    pngs = [p for p in written if p.suffix == ".png"]
    assert {p.name for p in pngs} == {"det.png", "scores_siamese_conv.png", "scores_mfcc_stats.png"}
    for png in pngs:
        assert png.stat().st_size > 0
        image = matplotlib_image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_write_report_json_only(tmp_path: Path) -> None:
    emb, labels, groups = clustered(n_labels=6, per_label=3)
    results = {"x": evaluate(emb, labels, groups, episodes=5)}
    written = write_report(results, {}, json_path=tmp_path / "r.json")
    assert written == [tmp_path / "r.json"]


def test_plot_det_thins_large_trial_sets(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(400, 8))
    labels = [f"l{i % 40}" for i in range(400)]
    path = plot_det({"random": trial_scores(emb, labels)}, tmp_path / "det.png")
    assert path.stat().st_size > 0


def test_markdown_table() -> None:
    emb, labels, groups = clustered()
    few = clustered(n_labels=4, per_label=3)
    results = compare({"encoder": (emb, labels, groups), "tiny": few}, episodes=20)
    table = markdown_table(results)
    lines = table.strip().splitlines()
    assert lines[0].startswith("| system | EER % | minDCF | 5-way 1-shot % | 5-way 5-shot %")
    assert "LOO top-1 %" in lines[0] and "hard-trial EER %" in lines[0]
    assert len(lines) == 2 + 2
    assert lines[2].startswith("| encoder |") and lines[3].startswith("| tiny |")
    assert "–" in lines[3]  # 5-way is not computable with 4 labels
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_importing_evaluation_does_not_import_matplotlib_or_scipy() -> None:
    code = "import json, sys, edgesiam.evaluation; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert "edgesiam" in loaded and "numpy" in loaded
    assert not loaded & {"matplotlib", "scipy"}

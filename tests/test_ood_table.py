"""The out-of-domain table: one column per channel and the mean over the shifted ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ood_table.py"


def report(path: Path, systems: dict[str, tuple[float, float]]) -> None:
    body = {
        name: {"eer": eer, "way5_shot1": acc, "n_recordings": 10, "n_labels": 3}
        for name, (eer, acc) in systems.items()
    }
    path.write_text(json.dumps({"systems": body}))


def test_table_has_a_column_per_channel_and_the_out_of_domain_mean(tmp_path: Path) -> None:
    report(tmp_path / "speaker-clean.json", {"ours": (0.10, 0.9), "mfcc": (0.20, 0.8)})
    report(tmp_path / "speaker-gsm.json", {"ours": (0.20, 0.7), "mfcc": (0.30, 0.6)})
    report(tmp_path / "speaker-far-field.json", {"ours": (0.40, 0.5), "mfcc": (0.35, 0.4)})
    (tmp_path / "speaker-notes.json").write_text("{}")  # not a channel: ignored
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert "| system (EER %, lower is better) | clean | gsm | far-field |" in out
    assert "| ours | 10.0 | 20.0 | 40.0 | **30.0** |" in out  # mean of gsm and far-field only
    assert "| mfcc | 20.0 | 30.0 | 35.0 | **32.5** |" in out
    assert "| ours | 90.0 | 70.0 | 50.0 | **60.0** |" in out
    assert "10 recordings, 3 labels" in out


def test_a_leave_one_corpus_out_set_gets_its_own_tables(tmp_path: Path) -> None:
    report(tmp_path / "speaker-clean.json", {"ours": (0.10, 0.9)})
    report(tmp_path / "speaker.speech-tuxpaint-clean.json", {"ours": (0.30, 0.6)})
    report(tmp_path / "speaker.speech-tuxpaint-amr-nb.json", {"ours": (0.40, 0.5)})
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    own, corpus = out.split("leave-one-corpus-out: speech-tuxpaint (never trained on)")
    assert "**speaker — held-out set" in own and "| ours | 10.0 | **—** |" in own
    assert "| system (EER %, lower is better) | clean | amr-nb |" in corpus
    assert "| ours | 30.0 | 40.0 | **40.0** |" in corpus


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 1 and "no <bundle>-<channel>.json" in done.stderr


def run(*args: str) -> str:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=True
    ).stdout


def test_peers_get_rows_and_the_model_is_divided_by_each_teacher(tmp_path: Path) -> None:
    rows = {"ours": (0.30, 0.5), "mfcc": (0.25, 0.6)}
    report(tmp_path / "speaker-clean.json", {**rows, "CAM++ (teacher)": (0.15, 0.8)})
    report(tmp_path / "speaker-gsm.json", {**rows, "CAM++ (teacher)": (0.20, 0.7)})
    report(tmp_path / "speaker-ulaw.json", {**rows, "CAM++ (teacher)": (0.40, 0.7)})
    for name in ("speaker-clean", "speaker-gsm", "speaker-ulaw"):  # Resemblyzer: no teacher
        document = json.loads((tmp_path / f"{name}.json").read_text())
        document["systems"]["Resemblyzer"] = {"eer": 0.28, "way5_shot1": 0.6, "loo_top1": 0.7}
        (tmp_path / f"{name}.json").write_text(json.dumps(document))
    out = run(str(tmp_path))
    assert "| CAM++ (teacher) | 15.0 | 20.0 | 40.0 | **30.0** |" in out
    assert "| Resemblyzer | 28.0 | 28.0 | 28.0 | **28.0** |" in out
    # ours 30 / CAM++: 2× clean, 1.5× gsm, 0.75× ulaw; headline: mean 30 / mean 30
    assert "| *ours ÷ CAM++ (teacher)* | 2.00× | 1.50× | 0.75× | **1.00×** |" in out
    assert "ours ÷ Resemblyzer" not in out and out.count("÷") == 1  # under the EER table only
    assert "| Resemblyzer | 70.0 | 70.0 | 70.0 | **70.0** |" in out  # leave-one-out table


def test_merge_adds_new_systems_and_keeps_the_rest(tmp_path: Path) -> None:
    runs, new = tmp_path / "ood", tmp_path / "peers"
    runs.mkdir()
    new.mkdir()
    report(runs / "events-clean.json", {"ours": (0.2, 0.6), "mfcc": (0.3, 0.5)})
    document = json.loads((runs / "events-clean.json").read_text())
    document["window_thresholds"] = {"kept": True}
    (runs / "events-clean.json").write_text(json.dumps(document))
    report(new / "events-clean.json", {"aisfx (teacher)": (0.1, 0.9), "mfcc": (0.31, 0.5)})
    report(new / "events-gsm.json", {"aisfx (teacher)": (0.15, 0.8)})
    out = run("--merge", str(new), str(runs))
    merged = json.loads((runs / "events-clean.json").read_text())
    assert list(merged["systems"]) == ["ours", "mfcc", "aisfx (teacher)"]
    assert merged["systems"]["mfcc"]["eer"] == 0.31  # the newer report wins
    assert merged["window_thresholds"] == {"kept": True}
    assert (runs / "events-gsm.json").exists()
    assert "| aisfx (teacher) | 10.0 | 15.0 | **15.0** |" in out
    assert "| *ours ÷ aisfx (teacher)* | 2.00× | — | **—** |" in out  # ours has no gsm row


def motion_report(path: Path, systems: dict[str, tuple[float, float | None]], labels: int) -> None:
    body = {
        name: {
            "eer": eer,
            "way5_shot5": acc,
            "way5_shot1": acc,
            "loo_top1": 0.5,
            "n_recordings": 40,
            "n_labels": labels,
        }
        for name, (eer, acc) in systems.items()
    }
    path.write_text(json.dumps({"systems": body}))


def test_motion_has_a_column_per_sensor_set_and_candidates_from_another_folder(
    tmp_path: Path,
) -> None:
    shipped, candidate = tmp_path / "shipped", tmp_path / "candidate"
    shipped.mkdir()
    candidate.mkdir()
    motion_report(shipped / "motion-clean.json", {"ours": (0.1, 0.9), "stats": (0.2, 0.8)}, 6)
    motion_report(shipped / "motion-rot90.json", {"ours": (0.3, 0.4), "stats": (0.3, 0.5)}, 6)
    motion_report(
        shipped / "motion-basicmotions.json", {"ours": (0.2, None), "stats": (0.1, None)}, 4
    )
    motion_report(candidate / "motion-rot90.json", {"new": (0.2, 0.7)}, 6)
    motion_report(candidate / "motion-basicmotions.json", {"new": (0.1, None)}, 4)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(shipped), str(candidate)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| system (5-way 5-shot %, higher is better) | clean | rot90 | basicmotions |" in out
    assert "| ours | 90.0 | 40.0 | — | **40.0** |" in out  # BasicMotions has 4 labels: no 5-way
    assert "| new | — | 70.0 | — | **70.0** |" in out
    assert "| ours | 10.0 | 30.0 | 20.0 | **25.0** |" in out  # EER: over both shifted sets
    assert "`basicmotions`: BasicMotions wrist IMU" in out and "40 recordings, 4 labels" in out


def with_thresholds(path: Path, system: str, rates: dict[str, tuple[float, float]]) -> None:
    """Add ``edgesiam eval``'s ``thresholds`` (target → realised fmr, fnmr) to ``system``."""
    document = json.loads(path.read_text())
    threshold = {"0.01": 0.77, "0.001": 0.83}
    document["systems"][system]["thresholds"] = {
        target: {"threshold": threshold[target], "fmr": fmr, "fnmr": fnmr, "n_impostor": 1000}
        for target, (fmr, fnmr) in rates.items()
    }
    path.write_text(json.dumps(document))


def test_thresholds_table_gives_the_realised_rates_beside_each_target(tmp_path: Path) -> None:
    sets = {
        "clean": {"0.01": (0.008, 0.30), "0.001": (0.0005, 0.52)},
        "gsm": {"0.01": (0.10, 0.12), "0.001": (0.02, 0.25)},
        "tuxpaint": {"0.01": (0.035, 0.40), "0.001": (0.001, 0.61)},
    }
    for name, rates in sets.items():
        report(tmp_path / f"speaker-{name}.json", {"ours": (0.2, 0.7), "mfcc": (0.3, 0.6)})
        with_thresholds(tmp_path / f"speaker-{name}.json", "ours", rates)
    out = run(str(tmp_path))
    assert "thresholds out of domain — ours" in out
    assert "| target FMR | threshold | clean | gsm | tuxpaint |" in out
    # realised FMR % (× target only where above it) / FNMR %
    assert "| 1% | 0.770 | 0.80 / 30.0 | 10.00 (10×) / 12.0 | 3.50 (3.5×) / 40.0 |" in out
    assert "| 0.1% | 0.830 | 0.05 / 52.0 | 2.00 (20×) / 25.0 | 0.10 / 61.0 |" in out
    assert "Impostor trials per set: clean 1,000, gsm 1,000, tuxpaint 1,000" in out
    # a set from a new source is a column of the thresholds table only
    assert "| system (EER %, lower is better) | clean | gsm | **mean out-of-domain** |" in out


def test_no_thresholds_table_without_a_bundle(tmp_path: Path) -> None:
    report(tmp_path / "events-clean.json", {"ours": (0.2, 0.7)})
    assert "thresholds out of domain" not in run(str(tmp_path))

"""``edgesiam tune`` end to end on a small generated dataset, its folder checks, its split, its
export retries, and the tuned bundle on the device-only installs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from edgesiam.cli import main
from edgesiam.data.readers import Recording
from edgesiam.errors import BundleError, DataError, GateError
from edgesiam.export.gate import Check, GateReport
from edgesiam.model.bundle import load_manifest
from edgesiam.train.weights import source_from_bundle
from edgesiam.tune import export_with_retries, refuse_overlap, split_recordings
from tests.support.signals import make_motion, write_audio_dataset

ROOT = Path(__file__).resolve().parents[1]
MOTION_BUNDLE = ROOT / "export" / "motion"
FAST = ["--set", "optim.epochs=2", "--set", "optim.steps_per_epoch=2", "--minutes", "1", "-q"]


@pytest.fixture(scope="module")
def mine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder: 5 labels × 6 recordings in groups g0 and g1 (GROUP__NAME files)."""
    return write_audio_dataset(
        tmp_path_factory.mktemp("mine") / "sounds", labels=5, per_label=6, seed=7
    )


@pytest.fixture(scope="module")
def tuned(mine: Path, audio_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tuned") / "my-sounds"
    assert main(["tune", str(mine), "--from", str(audio_bundle), "-o", str(out), *FAST]) == 0
    return out


def test_tune_writes_a_gated_bundle_and_an_honest_comparison(tuned: Path) -> None:
    manifest = load_manifest(tuned)  # every hash checks, the report's included
    assert manifest.gate.passed
    assert {"TUNING.md", "TUNING.json", "weights.safetensors", "recipe.yaml"} <= set(manifest.files)
    doc = json.loads((tuned / "TUNING.json").read_text())
    split = doc["split"]
    assert split["by"] == "group"
    assert not set(split["heldout"]["groups"]) & set(
        split["fit"]["groups"] + split["val"]["groups"]
    )
    assert split["heldout"]["recordings"] == manifest.thresholds.recordings
    assert manifest.thresholds.data.endswith("heldout")
    systems = list(doc["heldout"])
    assert systems[0] == "tuned (int8)" and systems[1] == "original (int8)"
    assert systems[2].startswith("classic")
    for metrics in doc["heldout"].values():
        assert 0.0 <= metrics["eer"] <= 1.0 and metrics["loo_top1"] is not None
    assert doc["deploy"] in systems[:2] and doc["verdict"]
    assert len(doc["tuning"]["history"]) == doc["tuning"]["epochs"] <= 2
    text = (tuned / "TUNING.md").read_text()
    assert "| tuned (int8) |" in text and "| original (int8) |" in text and doc["verdict"] in text
    assert source_from_bundle(tuned)["config"]["optim"]["epochs"] == 2  # can be tuned again


@pytest.mark.parametrize("venv", [".venv-litert", ".venv-tflite"])
def test_tuned_bundle_runs_on_the_device_installs(
    venv: str, tuned: Path, mine: Path, tmp_path: Path
) -> None:
    if not (ROOT / venv).is_dir():
        pytest.skip(f"{venv} does not exist: run scripts/make_device_venvs.sh")
    script = (
        "import json, sys\n"
        "from edgesiam.data.readers import scan_dataset\n"
        "from edgesiam.model.embedders import embed_dataset\n"
        "from edgesiam.model.interpreters import load_model\n"
        "m = load_model(sys.argv[1])\n"
        "r = embed_dataset(m, scan_dataset(sys.argv[2]), progress=False)\n"
        "heavy = sorted(k for k in sys.modules if k.split('.')[0] in "
        "('torch', 'tensorflow', 'librosa', 'keras', 'safetensors'))\n"
        "print(json.dumps({'n': len(r.labels), 'heavy': heavy, 'norm': float(abs(r.embeddings).sum())}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "EDGESIAM_INTERPRETER"}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's edgesiam, not an installed one
    done = subprocess.run(
        [str(ROOT / venv / "bin" / "python"), "-c", script, str(tuned), str(mine)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["n"] == 30 and report["heavy"] == [] and report["norm"] > 0


# --- the folder checks ---------------------------------------------------------------------------


def tune_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["tune", *args, "-o", "unused-output", *FAST]) == 2
    return capsys.readouterr().err


def test_too_few_recordings_per_label_are_named(
    audio_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_audio_dataset(tmp_path / "few", labels=3, per_label=3)
    err = tune_error(capsys, str(folder), "--from", str(audio_bundle))
    assert "too few recordings per label: voice0 (3), voice1 (3), voice2 (3)" in err
    assert "at least 5" in err


def test_mixed_modalities_are_refused(
    audio_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_audio_dataset(tmp_path / "mixed", labels=2, per_label=5)
    np.save(folder / "voice1" / "imu.npy", np.zeros((100, 6), np.float32))
    err = tune_error(capsys, str(folder), "--from", str(audio_bundle))
    assert "mixes audio and sensor files" in err and "imu.npy" in err


def test_a_sensor_folder_for_an_audio_bundle_is_refused(
    audio_bundle: Path, sensor_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = tune_error(capsys, str(sensor_dataset), "--from", str(audio_bundle))
    assert "holds sensor recordings, but the model to tune is for audio" in err


def test_wrong_channel_count_names_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imu"
    folder.mkdir()
    (folder / "dataset.toml").write_text('modality = "sensor"\nsample_rate = 50\n')
    rng = np.random.default_rng(0)
    for label in ("wave", "shake"):
        (folder / label).mkdir()
        for i in range(5):
            np.save(folder / label / f"r{i}.npy", make_motion(i % 3, 300, 50, rng)[:, :3])
    err = tune_error(capsys, str(folder), "--from", str(MOTION_BUNDLE))
    assert "10 recording(s) cannot be used with this model (6 sensor channels: acc_x" in err
    assert "shake/r0.npy" in err and "wave/r4.npy" in err and "has 3 channels" in err


def test_unreadable_files_are_named(
    audio_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_audio_dataset(tmp_path / "broken", labels=2, per_label=5)
    (folder / "voice1" / "g0__take0.wav").write_bytes(b"RIFF not really a wav")
    (folder / "voice1" / "notes.txt").write_text("not a recording: logged, not an error")
    err = tune_error(capsys, str(folder), "--from", str(audio_bundle))
    assert "1 recording(s) cannot be used" in err and "voice1/g0__take0.wav" in err


def test_validation_equal_to_training_is_refused(
    audio_bundle: Path, mine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = tune_error(capsys, str(mine), "--from", str(audio_bundle), "--heldout", str(mine))
    assert "validation equal to training is refused" in err
    copy = tmp_path / "copy"
    for f in mine.rglob("*.wav"):
        (copy / f.parent.name).mkdir(parents=True, exist_ok=True)
        data, rate = sf.read(f)
        sf.write(copy / f.parent.name / f.name.replace("__", "-"), data, rate, subtype="PCM_16")
    err = tune_error(capsys, str(mine), "--from", str(audio_bundle), "--heldout", str(copy))
    assert "is the same recording as the training file" in err


def test_a_bundle_without_weights_says_what_to_do(
    audio_bundle: Path, mine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgesiam.model.bundle import read_manifest, write_manifest

    old = tmp_path / "old"
    old.mkdir()
    for f in audio_bundle.iterdir():
        if f.name not in ("weights.safetensors", "recipe.yaml"):
            (old / f.name).write_bytes(f.read_bytes())
    write_manifest(old, read_manifest(old))  # hashes what is left
    err = tune_error(capsys, str(mine), "--from", str(old))
    assert "carries no float weights" in err and "--from runs/NAME/best.pt" in err


# --- the split -----------------------------------------------------------------------------------


def _files(folder: Path, names: list[str]) -> list[Path]:
    """Distinct small files (the split refuses the same content on both sides)."""
    paths = [folder / n for n in names]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(str(p))
    return paths


def test_split_never_puts_a_group_on_both_sides(tmp_path: Path) -> None:
    names = [f"{label}/s{s}__r{i}.wav" for label in "abcd" for s in range(6) for i in range(2)]
    recs = [Recording(p, p.parent.name, p.name.split("__")[0]) for p in _files(tmp_path, names)]
    for seed in range(10):
        split = split_recordings(recs, seed)
        held = {r.group for r in split.heldout}
        assert held and not held & {r.group for r in split.fit + split.val}
        assert {r.label for r in split.heldout} == set("abcd")
        assert len(split.heldout) + len(split.fit) + len(split.val) == len(recs)


def test_split_without_groups_holds_out_recordings(tmp_path: Path) -> None:
    names = [f"{label}/r{i}.wav" for label in "abc" for i in range(10)]
    recs = [Recording(p, p.parent.name) for p in _files(tmp_path, names)]
    split = split_recordings(recs, 0)
    assert split.by == "recording" and 6 <= len(split.heldout) <= 12
    assert not {r.path for r in split.heldout} & {r.path for r in split.fit + split.val}


def test_the_same_content_on_both_sides_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    with pytest.raises(DataError, match="same recording as the training file"):
        refuse_overlap([Recording(a, "x")], [Recording(b, "x")])


# --- export retries ------------------------------------------------------------------------------


def test_export_tries_what_the_gate_suggests_before_giving_up(
    tmp_path: Path, tiny_audio_model: Path
) -> None:
    seen: list[dict[str, Any]] = []
    failing = GateReport([Check("parity.min_cosine", False, "min cosine 0.988")])

    def export(path: Path, out: Path, calib: Path, heldout: Path, options: Any) -> Any:
        seen.append({"calib_windows": options.calib_windows, "l2": options.l2_in_model})
        if len(seen) < 3:
            raise GateError(failing)
        return type("Result", (), {"report": GateReport([Check("parity.min_cosine", True, "")])})()

    _, attempts = export_with_retries(
        tiny_audio_model, tmp_path / "out", tmp_path, tmp_path, 0, False, lambda _m: None, export
    )
    assert [a.passed for a in attempts] == [False, False, True]
    assert seen == [
        {"calib_windows": 300, "l2": True},
        {"calib_windows": 1000, "l2": True},
        {"calib_windows": 1000, "l2": False},
    ]
    assert "to try: more calibration windows" in attempts[0].report

    def never(*_a: Any) -> Any:
        raise GateError(failing)

    with pytest.raises(BundleError, match=r"failed the export gate after 3 attempt"):
        export_with_retries(
            tiny_audio_model, tmp_path / "out", tmp_path, tmp_path, 0, False, print, never
        )


def test_the_last_resort_clips_sensor_features_tighter(tmp_path: Path) -> None:
    from edgesiam.train.checkpoint import CheckpointEmbedder, save_checkpoint
    from edgesiam.tune import _clipped

    path = tmp_path / "motion.pt"
    save_checkpoint(path, source_from_bundle(MOTION_BUNDLE))
    assert _clipped(path, 4.0) is None  # the shipped motion front-end clips at ±4 already
    clipped = _clipped(path, 3.0)
    assert clipped is not None
    assert CheckpointEmbedder(clipped).frontend.clip == 3.0  # type: ignore[attr-defined]


# --- the sampler ---------------------------------------------------------------------------------


def test_a_recipe_batch_larger_than_the_labels_allow_trains(
    audio_dataset: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    from edgesiam.train.config import TrainConfig
    from edgesiam.train.loop import train
    from tests.support.recipes import audio_recipe

    recipe = audio_recipe(audio_dataset, audio_heldout, epochs=1, steps_per_epoch=1)
    recipe["sampler"] = {"m_per_class": 4, "batch_size": 128}  # 6 labels × 4 = 24 at most
    lines: list[str] = []
    train(TrainConfig.model_validate(recipe), tmp_path / "run", progress=False, log=lines.append)
    assert (tmp_path / "run" / "best.pt").exists()
    assert any("batch size 24 (6 classes × 4)" in line for line in lines)


def test_margin_softmax_centres_start_at_each_label_mean() -> None:
    import torch

    from edgesiam.core.frontend import SensorFrontEnd
    from edgesiam.train.config import SubCenterArcFaceObjective
    from edgesiam.train.encoder import Conv1dEncoder
    from edgesiam.train.objectives import build_objective
    from edgesiam.tune import _imprint_centres

    rng = np.random.default_rng(0)
    windows = np.stack([make_motion(k % 3, 100, 50, rng) for k in range(30)])
    labels = np.arange(30) % 3
    frontend = SensorFrontEnd.fit(windows)
    model = Conv1dEncoder(6, [8], [3], [1], [1], embedding_dim=8)
    loss = build_objective(SubCenterArcFaceObjective(sub_centers=2), 3, 8).loss
    _imprint_centres(loss, model, frontend, windows, labels, "cpu")
    with torch.no_grad():
        emb = model(torch.from_numpy(frontend(windows)))
    w = torch.nn.functional.normalize(loss.W.t(), dim=1)  # (3 classes · 2 sub-centres, 8)
    for c in range(3):
        mean = torch.nn.functional.normalize(emb[labels == c].mean(0), dim=0)
        assert torch.all(w[2 * c : 2 * c + 2] @ mean > 0.99)


def test_split_by_recording_ignores_the_prefixes(tmp_path: Path) -> None:
    names = [
        f"{label}/{lang}__r{i}.wav" for label, lang in (("a", "ca"), ("b", "el")) for i in range(8)
    ]
    recs = [Recording(p, p.parent.name, p.name.split("__")[0]) for p in _files(tmp_path, names)]
    with pytest.raises(DataError, match="held-out part needs two labels"):
        split_recordings(recs, 0)  # each label is one group: none can be held out
    split = split_recordings(recs, 0, by_group=False)
    assert split.by == "recording" and {r.label for r in split.heldout} == {"a", "b"}


def _metrics(eer: float) -> dict[str, Any]:
    return {"eer": eer, "n_recordings": 40}


@pytest.mark.parametrize(
    ("tuned", "original", "improved", "deploy", "says"),
    [
        (0.05, 0.15, True, "tuned", "Deploy the tuned bundle: held-out EER 5.00% tuned"),
        (0.12, 0.15, True, "original", "within 5.6 points, what 40 held-out recordings"),
        (0.25, 0.15, True, "original", "improved the validation part but not the held-out"),
        (0.15, 0.15, False, "original", "no tuning epoch beat the original weights"),
        (0.32, 0.45, True, "tuned", "Neither model separates these held-out recordings well"),
    ],
)
def test_verdict_recommends_the_tuned_bundle_only_for_a_clear_gain(
    tuned: float, original: float, improved: bool, deploy: str, says: str
) -> None:
    from edgesiam.tune import TuneResult, verdict

    names = ["tuned (int8)", "original (int8)", "classic (mfcc-stats)"]
    results = {names[0]: _metrics(tuned), names[1]: _metrics(original), names[2]: _metrics(0.5)}
    result = TuneResult({}, 0.2, 0.1 if improved else 0.2, 3 if improved else 0, 3, 1.0, 16, "cpu")
    choice, text = verdict(results, names, result)
    assert choice.startswith(deploy) and says in text


def test_tuning_is_reproducible(audio_bundle: Path, mine: Path) -> None:
    from edgesiam.tune import check_folder, fine_tune, tune_config

    source = source_from_bundle(audio_bundle)
    folder = check_folder([mine], source)
    split = split_recordings(folder.info.recordings, seed=0)
    settings = {"optim.epochs": 2, "optim.steps_per_epoch": 2}
    config = tune_config(source, [mine], 1.0, settings, lambda _m: None)
    runs = [fine_tune(source, config, folder, split, False, lambda _m: None) for _ in range(2)]
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    assert [h["val_eer"] for h in runs[0].history] == [h["val_eer"] for h in runs[1].history]

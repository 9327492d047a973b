"""The edgesiam command as a user runs it: help that teaches, clear errors, train → eval → embed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgesiam.cli import main
from tests.support.cli import run_edgesiam
from tests.support.recipes import audio_recipe, sensor_recipe


def test_help_lists_every_command_and_an_example() -> None:
    done = run_edgesiam("--help")
    assert done.returncode == 0
    for verb in ("data", "train", "eval", "embed", "validate"):
        assert verb in done.stdout
    assert "edgesiam train configs/speaker.yaml" in done.stdout


def test_train_help_explains_outputs_and_torchrun() -> None:
    done = run_edgesiam("train", "--help")
    assert "best.pt" in done.stdout and "torchrun" in done.stdout


def test_user_errors_are_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["eval", str(tmp_path / "nope.pt"), str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "model not found" in err and "Traceback" not in err


def test_validate_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "modality": "audio", "colour": "red"}))
    good = Path(__file__).parents[1] / "configs" / "motion.yaml"
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr()
    assert "motion.yaml: ok" in out.out
    assert "colour: unknown key" in out.err and "data: Field required" in out.err


def test_train_eval_embed_end_to_end(
    audio_dataset: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(audio_recipe(audio_dataset, audio_heldout, epochs=2)))
    run = tmp_path / "run"
    assert main(["train", str(recipe), "-o", str(run), "-q"]) == 0

    assert (
        main(
            [
                "eval",
                str(run / "best.pt"),
                str(audio_heldout),
                "--json",
                str(tmp_path / "m.json"),
                "--plots",
                str(tmp_path / "plots"),
                "--episodes",
                "50",
                "-q",
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    text = json.dumps(metrics)
    assert "edgesiam" in text and "mfcc-stats" in text
    assert sorted(p.suffix for p in (tmp_path / "plots").iterdir()) and all(
        p.stat().st_size > 1000 for p in (tmp_path / "plots").iterdir()
    )

    assert (
        main(
            ["embed", str(run / "best.pt"), str(audio_heldout), "-o", str(tmp_path / "e.npz"), "-q"]
        )
        == 0
    )
    npz = np.load(tmp_path / "e.npz")
    assert npz["embeddings"].dtype == np.float32 and npz["embeddings"].shape == (36, 16)
    assert len(npz["labels"]) == len(npz["paths"]) == 36
    assert np.allclose(np.linalg.norm(npz["embeddings"], axis=1), 1, atol=1e-5)


def test_sensor_eval_uses_channel_statistics_baseline(sensor_dataset: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(sensor_recipe(sensor_dataset, sensor_dataset)))
    assert main(["train", str(recipe), "-o", str(tmp_path / "run"), "-q"]) == 0
    assert (
        main(
            [
                "eval",
                str(tmp_path / "run" / "best.pt"),
                str(sensor_dataset),
                "--json",
                str(tmp_path / "m.json"),
                "--episodes",
                "20",
                "-q",
            ]
        )
        == 0
    )
    assert "channel-stats" in (tmp_path / "m.json").read_text()


def test_set_override_is_validated(
    audio_dataset: Path, audio_heldout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(audio_recipe(audio_dataset, audio_heldout)))
    assert main(["train", str(recipe), "--set", "optim.epochs=-1", "-q"]) == 2
    assert "optim.epochs" in capsys.readouterr().err

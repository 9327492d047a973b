"""Training end to end on small generated data: it learns, it resumes, it runs under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgesiam.core.metrics import equal_error_rate, trial_scores
from edgesiam.data.readers import scan_dataset
from edgesiam.model.embedders import embed_dataset
from edgesiam.train.checkpoint import CheckpointEmbedder, load_checkpoint
from edgesiam.train.config import TrainConfig, load_train_config
from edgesiam.train.loop import train
from tests.support.recipes import audio_recipe, sensor_recipe


def test_audio_training_learns_and_writes_checkpoints(
    audio_dataset: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    config = TrainConfig.model_validate(audio_recipe(audio_dataset, audio_heldout))
    result = train(config, tmp_path / "run", progress=False, log=lambda _m: None)
    assert (tmp_path / "run" / "best.pt").exists()
    assert (tmp_path / "run" / "training.png").stat().st_size > 1000
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history["history"]) == 3
    assert result.best_val_eer is not None and result.best_val_eer < 0.35

    embedder = CheckpointEmbedder(tmp_path / "run" / "best.pt")
    emb = embed_dataset(embedder, scan_dataset(audio_heldout), progress=False)
    assert emb.embeddings.shape == (36, 16)
    trials = trial_scores(emb.embeddings, emb.labels)
    assert equal_error_rate(trials.genuine, trials.impostor)[0] == pytest.approx(
        result.best_val_eer, abs=1e-6
    )


def test_checkpoint_carries_config_and_frontend(
    audio_dataset: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    config = TrainConfig.model_validate(audio_recipe(audio_dataset, audio_heldout, epochs=1))
    train(config, tmp_path, progress=False, log=lambda _m: None)
    data = load_checkpoint(tmp_path / "best.pt")
    assert TrainConfig.model_validate(data["config"]) == config
    assert data["frontend"]["kind"] == "logmel"
    assert tuple(data["frontend"]["filterbank"].shape) == (24, 257)
    assert data["window"] == 8000 and data["hop"] == 4000 and data["sample_rate"] == 16000


def test_resume_continues_from_last_epoch(
    audio_dataset: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    logs: list[str] = []
    first = TrainConfig.model_validate(audio_recipe(audio_dataset, audio_heldout, epochs=2))
    train(first, tmp_path, progress=False, log=logs.append)
    more = TrainConfig.model_validate(audio_recipe(audio_dataset, audio_heldout, epochs=4))
    result = train(more, tmp_path, resume=True, progress=False, log=logs.append)
    assert any("resuming from epoch 2" in m for m in logs)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.epochs_run == 2


def test_sensor_training_runs_with_imu_augmentation(sensor_dataset: Path, tmp_path: Path) -> None:
    config = TrainConfig.model_validate(sensor_recipe(sensor_dataset, sensor_dataset))
    result = train(config, tmp_path, progress=False, log=lambda _m: None)
    embedder = CheckpointEmbedder(tmp_path / "best.pt")
    assert embedder.modality == "sensor" and embedder.channels == 6 and embedder.window == 100
    assert result.best_val_eer is not None and result.best_val_eer < 0.3


def test_early_stopping_and_time_limit(
    audio_dataset: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    logs: list[str] = []
    recipe = audio_recipe(audio_dataset, audio_heldout, epochs=50, patience=1, lr=1e-9)
    train(TrainConfig.model_validate(recipe), tmp_path, progress=False, log=logs.append)
    assert any("stopping early" in m for m in logs)
    history = json.loads((tmp_path / "history.json").read_text())["history"]
    assert len(history) < 50


def test_torchrun_ddp_two_cpu_processes(
    audio_dataset: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    """Multi-process training with the gloo backend: both replicas end identical."""
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(yaml.safe_dump(audio_recipe(audio_dataset, audio_heldout, epochs=2)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "edgesiam",
            "train",
            str(recipe),
            "-o",
            str(tmp_path / "run"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "× 2 processes" in done.stdout
    assert "replicas in sync across 2 processes" in done.stdout
    summary = json.loads((tmp_path / "run" / "history.json").read_text())
    assert summary["world_size"] == 2
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] >= 1


def test_recipe_mismatch_between_modality_and_folder(sensor_dataset: Path, tmp_path: Path) -> None:
    from edgesiam.errors import DataError

    config = TrainConfig.model_validate(audio_recipe(sensor_dataset, sensor_dataset))
    with pytest.raises(DataError, match="recipe is for audio"):
        train(config, tmp_path, progress=False, log=lambda _m: None)


def test_shipped_recipe_loads(tmp_path: Path) -> None:
    config = load_train_config(Path(__file__).parents[2] / "configs" / "speaker.yaml")
    assert config.modality == "audio"
    assert np.isfinite(config.optim.lr)

"""Distillation from a teacher's cached embeddings, and selection on out-of-domain validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgesiam.train.config import DistillConfig, TrainConfig
from edgesiam.train.distill import Distiller, relation_loss
from edgesiam.train.loop import train
from edgesiam.train.teachers import embed as teacher_embed
from edgesiam.train.teachers.campplus import CamPlusPlus
from tests.support.recipes import audio_recipe, sensor_recipe
from tests.support.teachers import randomised_campplus


class CountingTeacher(CamPlusPlus):
    calls = 0

    def embed(self, audio: np.ndarray) -> np.ndarray:
        type(self).calls += 1
        return super().embed(audio)


@pytest.fixture
def teacher(monkeypatch: pytest.MonkeyPatch) -> type[CountingTeacher]:
    """A CAM++ with random weights stands in for the published one (no download)."""
    model = CountingTeacher()
    model.load_state_dict(randomised_campplus().state_dict())
    model.weights_sha256 = "0d" * 32
    CountingTeacher.calls = 0
    monkeypatch.setattr(teacher_embed, "load_campplus", lambda root: model)
    return CountingTeacher


def test_relation_loss_is_zero_only_when_the_similarities_agree() -> None:
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    rotated = a @ torch.linalg.qr(torch.randn(8, 8, generator=g))[0]  # same cosines
    other = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    assert float(relation_loss(a, rotated)) == pytest.approx(0.0, abs=1e-10)
    assert float(relation_loss(a, other)) > 0.01
    # dimension-free: a 3-d student is compared with a 8-d teacher
    assert relation_loss(F.normalize(torch.randn(6, 3, generator=g), dim=1), a).ndim == 0


@pytest.mark.parametrize("kind", ["relation", "feature"])
def test_a_student_learns_the_teachers_similarities(kind: str) -> None:
    """Gradient steps on the distillation term alone bring a linear student to the teacher (its
    cosine matrix, or its embeddings through the head), from noisy inputs (the 'degraded copies')
    of the same recordings."""
    g = torch.Generator().manual_seed(1)
    teacher_space = F.normalize(torch.randn(12, 20, generator=g), dim=1).numpy()
    inputs = torch.randn(12, 10, generator=g)
    student = torch.nn.Linear(10, 6)
    distiller = Distiller.build(DistillConfig(kind=kind), teacher_space, embedding_dim=6)
    params = list(student.parameters())
    if distiller.head is not None:
        params += list(distiller.head.parameters())
    opt = torch.optim.Adam(params, lr=0.03)
    recordings = torch.arange(12)

    def gap() -> float:
        with torch.no_grad():
            return float(distiller(F.normalize(student(inputs), dim=1), recordings))

    before = gap()
    for _ in range(300):
        noisy = inputs + 0.05 * torch.randn(inputs.shape, generator=g)
        loss = distiller(F.normalize(student(noisy), dim=1), recordings)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert gap() < 0.5 * before


def test_training_with_distillation_caches_the_teacher(
    audio_dataset: Path,
    audio_heldout: Path,
    tmp_path: Path,
    teacher: type[CountingTeacher],
) -> None:
    recipe = audio_recipe(audio_dataset, audio_heldout, epochs=2)
    recipe["distill"] = {"kind": "relation", "weight": 2.0, "root": str(tmp_path / "data")}
    config = TrainConfig.model_validate(recipe)
    logs: list[str] = []
    result = train(config, tmp_path / "run", progress=False, log=logs.append)
    n_train = sum(1 for _ in audio_dataset.rglob("*.wav"))
    assert teacher.calls == n_train  # every clean training recording, once
    assert any("distilling from campplus" in m for m in logs)
    caches = list((tmp_path / "data" / ".cache" / "teachers" / "campplus").rglob("*.npz"))
    assert len(caches) == 1
    assert result.best_val_eer is not None
    # a second run reads the cache: the teacher embeds nothing again
    train(config, tmp_path / "again", progress=False, log=lambda _m: None)
    assert teacher.calls == n_train


def test_a_sensor_recipe_cannot_distil_from_an_audio_teacher(
    sensor_dataset: Path, tmp_path: Path
) -> None:
    recipe = sensor_recipe(sensor_dataset, sensor_dataset)
    recipe["distill"] = {"teacher": "campplus"}
    with pytest.raises(ValueError, match="sensor recipe"):
        TrainConfig.model_validate(recipe)
    with pytest.raises(ValueError, match="teacher"):
        TrainConfig.model_validate({**recipe, "distill": {"teacher": "birdnet"}})


def test_the_checkpoint_kept_is_chosen_on_the_mean_over_validation_folders(
    audio_dataset: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    recipe = audio_recipe(audio_dataset, audio_heldout, epochs=2)
    recipe["data"]["val_ood"] = [str(audio_dataset)]  # type: ignore[index]
    config = TrainConfig.model_validate(recipe)
    result = train(config, tmp_path / "run", progress=False, log=lambda _m: None)
    history = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    for entry in history:
        eers = entry["val_eers"]
        assert set(eers) == {audio_heldout.name, audio_dataset.name}
        assert entry["val_eer"] == pytest.approx(np.mean(list(eers.values())))
    assert result.best_val_eer == pytest.approx(min(e["val_eer"] for e in history))


def test_windows_without_a_teacher_target_are_left_out_of_the_term() -> None:
    g = torch.Generator().manual_seed(2)
    targets = F.normalize(torch.randn(4, 5, generator=g), dim=1).numpy()
    targets[2:] = np.nan  # recordings of a folder the teacher does not speak for
    distiller = Distiller.build(DistillConfig(), targets, embedding_dim=3)
    emb = F.normalize(torch.randn(4, 3, generator=g), dim=1).requires_grad_()
    value = distiller(emb, torch.arange(4))
    assert torch.isfinite(value)
    expected = relation_loss(emb[:2], torch.from_numpy(targets[:2]))
    assert float(value) == pytest.approx(float(expected), rel=1e-5)
    value.backward()
    assert emb.grad is not None and torch.all(emb.grad[2:] == 0)
    alone = distiller(emb, torch.tensor([0, 2, 3]))  # one known window: no pair to compare
    assert float(alone) == 0.0


def test_the_teacher_speaks_only_for_the_folders_named(
    audio_dataset: Path,
    audio_heldout: Path,
    tmp_path: Path,
    teacher: type[CountingTeacher],
) -> None:
    recipe = audio_recipe(audio_dataset, audio_heldout, epochs=1)
    recipe["data"]["train"] = [str(audio_dataset), str(audio_heldout)]  # type: ignore[index]
    recipe["distill"] = {"root": str(tmp_path / "data"), "folders": [str(audio_dataset)]}
    train(TrainConfig.model_validate(recipe), tmp_path / "run", progress=False, log=print)
    assert teacher.calls == sum(1 for _ in audio_dataset.rglob("*.wav"))
    recipe["distill"] = {"folders": [str(tmp_path)]}
    with pytest.raises(ValueError, match=r"distill\.folders"):
        TrainConfig.model_validate(recipe)

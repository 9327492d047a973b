"""``edgesiam eval --peer campplus``: CAM++ scored beside the model on the same trials, its
embeddings cached (a CAM++ with random weights stands in for the published ones: no download)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgesiam.cli import main
from edgesiam.data.readers import scan_dataset
from edgesiam.errors import DataError
from edgesiam.model.embedders import EmbeddedDataset
from edgesiam.train.teachers import embed as teacher_embed
from edgesiam.train.teachers.campplus import CamPlusPlus
from tests.support.teachers import randomised_aisfx, randomised_campplus


class CountingCamPlusPlus(CamPlusPlus):
    calls = 0

    def embed(self, audio: np.ndarray) -> np.ndarray:
        type(self).calls += 1
        return super().embed(audio)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> type[CountingCamPlusPlus]:
    model = CountingCamPlusPlus()
    model.load_state_dict(randomised_campplus().state_dict())
    model.weights_sha256 = "0f" * 32
    CountingCamPlusPlus.calls = 0
    roots: list[Path] = []

    def load(root: Path) -> CamPlusPlus:
        roots.append(root)
        return model

    monkeypatch.setattr(teacher_embed, "load_campplus", load)
    return CountingCamPlusPlus


def test_eval_adds_campplus_on_the_same_trials_and_caches_it(
    tiny_audio_model: Path,
    audio_heldout: Path,
    tmp_path: Path,
    stand_in: type[CountingCamPlusPlus],
) -> None:
    args = ["eval", str(tiny_audio_model), str(audio_heldout), "--episodes", "20", "-q"]
    args += ["--peer", "campplus", "--peer-root", str(tmp_path / "data")]
    assert main([*args, "--json", str(tmp_path / "m.json")]) == 0
    systems = json.loads((tmp_path / "m.json").read_text())["systems"]
    assert list(systems) == ["edgesiam", "mfcc-stats", "CAM++ (teacher)"]
    peer, ours = systems["CAM++ (teacher)"], systems["edgesiam"]
    for key in ("n_recordings", "n_labels", "n_genuine", "n_impostor", "n_hard_impostor"):
        assert peer[key] == ours[key] == systems["mfcc-stats"][key], key
    assert peer["eer"] is not None and 0.0 <= peer["eer"] <= 1.0
    assert stand_in.calls == 36
    caches = list((tmp_path / "data" / ".cache" / "teachers" / "campplus").rglob("*.npz"))
    assert len(caches) == 1

    assert main([*args, "--json", str(tmp_path / "again.json")]) == 0
    assert stand_in.calls == 36  # every recording came from the cache
    again = json.loads((tmp_path / "again.json").read_text())["systems"]["CAM++ (teacher)"]
    assert again["eer"] == peer["eer"]


def test_a_speech_peer_refuses_sensor_data(sensor_dataset: Path, tmp_path: Path) -> None:
    info = scan_dataset(sensor_dataset)
    ours = EmbeddedDataset(np.zeros((1, 4), np.float32), ["a"], [None], ["x"])
    with pytest.raises(DataError, match="embeds audio; the dataset holds sensor"):
        teacher_embed.peer_system("campplus", info, ours, tmp_path)


def test_eval_help_explains_the_peer(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "--peer {campplus,resemblyzer,aisfx}" in text
        and "CAM++" in text
        and "PEER_ROOT/.cache" in text
    )


def test_teachers_embed_fills_the_cache_that_eval_reads(
    tiny_audio_model: Path,
    audio_heldout: Path,
    tmp_path: Path,
    stand_in: type[CountingCamPlusPlus],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = str(tmp_path / "data")
    embed = ["teachers", "embed", "--teacher", "campplus", "--peer-root", root, "-q"]
    assert main([*embed, str(audio_heldout)]) == 0
    first = capsys.readouterr().out
    assert "36 recordings, 192-d campplus embeddings (36 computed)" in first
    assert stand_in.calls == 36
    cache = next((tmp_path / "data" / ".cache" / "teachers" / "campplus").rglob("*.npz"))
    assert str(cache) in first
    assert main([*embed, str(audio_heldout)]) == 0
    assert "(0 computed)" in capsys.readouterr().out and stand_in.calls == 36

    args = ["eval", str(tiny_audio_model), str(audio_heldout), "--episodes", "20", "-q"]
    assert main([*args, "--no-baseline", "--peer", "campplus", "--peer-root", root]) == 0
    assert stand_in.calls == 36  # the distillation pass and the peer share one cache


def test_teachers_embed_refuses_sensor_data(
    sensor_dataset: Path,
    tmp_path: Path,
    stand_in: type[CountingCamPlusPlus],
    capsys: pytest.CaptureFixture[str],
) -> None:
    embed = ["teachers", "embed", "--teacher", "campplus", "--peer-root", str(tmp_path), "-q"]
    assert main([*embed, str(sensor_dataset)]) != 0
    err = capsys.readouterr().err
    assert f"{sensor_dataset}: campplus embeds audio; this folder holds sensor" in err
    assert stand_in.calls == 0


def test_teachers_embed_help_lists_the_teachers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["teachers", "embed", "--help"])
    text = capsys.readouterr().out
    assert "campplus   speakers: CAM++" in text and "aisfx      sound events: aisfx" in text
    assert "resemblyzer" not in text  # a peer in tables only: its licence is unstated


def test_eval_adds_aisfx_with_the_event_metrics(
    tiny_audio_model: Path,
    audio_heldout: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = randomised_aisfx()
    model.weights_sha256 = "5e" * 32
    monkeypatch.setattr(teacher_embed, "load_aisfx", lambda root: model)
    args = ["eval", str(tiny_audio_model), str(audio_heldout), "--episodes", "20", "-q"]
    args += ["--peer", "aisfx", "--peer-root", str(tmp_path / "data")]
    assert main([*args, "--json", str(tmp_path / "m.json")]) == 0
    systems = json.loads((tmp_path / "m.json").read_text())["systems"]
    assert list(systems) == ["edgesiam", "mfcc-stats", "aisfx (teacher)"]
    peer = systems["aisfx (teacher)"]
    assert peer["n_genuine"] == systems["edgesiam"]["n_genuine"]
    assert 0.0 <= peer["loo_top1"] <= 1.0 and 0.0 <= peer["way5_shot1"] <= 1.0
    cached = list((tmp_path / "data" / ".cache" / "teachers" / "aisfx").rglob("*.npz"))
    assert len(cached) == 1 and cached[0].parent.name == "5e5e5e5e5e5e5e5e-r1"

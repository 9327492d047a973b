"""`edgesiam data prepare imusim`: a dataset folder HAPT-shaped, seeded, re-made when options change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgesiam.cli import main
from edgesiam.data.readers import dataset_units, iter_recordings, scan_dataset
from edgesiam.data.recipes import prepare
from edgesiam.data.recipes.hapt import CHANNELS, SAMPLE_RATE, UNITS
from edgesiam.errors import RecipeError


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): np.load(p) for p in sorted(folder.rglob("*.npy"))}


def test_prepare_imusim_writes_a_hapt_shaped_dataset_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["data", "prepare", "imusim", "--classes", "5", "--performers", "3", "--root"]
    assert main([*args, str(tmp_path)]) == 0
    info = scan_dataset(tmp_path / "imusim" / "train")
    assert (info.modality, info.sample_rate, info.channels) == (
        "sensor",
        SAMPLE_RATE,
        list(CHANNELS),
    )
    assert dataset_units(info, info.channels) == list(UNITS)
    assert len(info.labels) == 5 and len(info) == 15 and info.groups == ["p00", "p01", "p02"]
    for _rec, x in iter_recordings(info, progress=False):
        assert x.shape == (300, 6) and np.all(np.isfinite(x))
        assert 0.3 < np.median(np.linalg.norm(x[:, :3], axis=1)) < 3.0  # gravity, in g
    summary = json.loads((tmp_path / "imusim" / "SUMMARY.json").read_text())
    assert summary["settings"] == {"classes": 5, "performers": 3, "seed": 0}
    assert summary["splits"]["train"]["recordings"] == 15
    assert "5 labels" in capsys.readouterr().out

    assert main([*args, str(tmp_path)]) == 0  # same options: nothing to do
    assert "already prepared" in capsys.readouterr().out


def test_the_same_seed_gives_the_same_files_and_a_new_seed_remakes_them(tmp_path: Path) -> None:
    options = {"classes": 3, "performers": 2, "seed": 4}
    prepare(["imusim"], tmp_path / "a", options=options)
    prepare(["imusim"], tmp_path / "b", options=options)
    first = _arrays(tmp_path / "a" / "imusim" / "train")
    second = _arrays(tmp_path / "b" / "imusim" / "train")
    assert first.keys() == second.keys() and len(first) == 6
    assert all(np.array_equal(first[k], second[k]) for k in first)

    [(_, summary)] = prepare(["imusim"], tmp_path / "a", options={**options, "seed": 5})
    assert summary is not None  # other settings: prepared again
    third = _arrays(tmp_path / "a" / "imusim" / "train")
    assert not any(np.array_equal(first[k], third[k]) for k in first)


def test_options_for_a_recipe_that_takes_none_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="--classes applies to no recipe"):
        prepare(["hapt"], tmp_path, options={"classes": 3})
    with pytest.raises(RecipeError, match="--classes >= 2"):
        prepare(["imusim"], tmp_path, options={"classes": 1})

"""Fast tests of the recipe framework (run_recipe) with a tiny fake recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesiam.data.recipes.base import Recipe, RecipeSummary, SplitSummary, run_recipe


class FakePrepare:
    """Writes ``out/train/a/x.txt``; fails after writing when ``fail`` is set."""

    def __init__(self, content: str = "v1", fail: bool = False) -> None:
        self.calls = 0
        self.content = content
        self.fail = fail

    def __call__(self, root: Path, out: Path) -> RecipeSummary:
        self.calls += 1
        (out / "train" / "a").mkdir(parents=True)
        (out / "train" / "a" / "x.txt").write_text(self.content)
        if self.fail:
            raise RuntimeError("network went away")
        return RecipeSummary(
            name="fake",
            version=1,
            modality="audio",
            splits={"train": SplitSummary(labels=1, recordings=1, hours=0.0)},
            sources=["test"],
            licence="CC0",
        )


def fake_recipe(prepare: FakePrepare, version: int = 1) -> Recipe:
    return Recipe(name="fake", version=version, description="a fake", prepare=prepare)


def test_run_recipe_is_idempotent(tmp_path: Path) -> None:
    prepare = FakePrepare()
    summary = run_recipe(fake_recipe(prepare), tmp_path)
    assert summary is not None and summary.splits["train"].recordings == 1
    assert (tmp_path / "fake" / "train" / "a" / "x.txt").read_text() == "v1"
    written = json.loads((tmp_path / "fake" / "SUMMARY.json").read_text())
    assert written["name"] == "fake" and written["version"] == 1
    assert "fake" in summary.render()

    assert run_recipe(fake_recipe(prepare), tmp_path) is None
    assert prepare.calls == 1
    assert not (tmp_path / ".fake.partial").exists()


def test_new_version_or_force_prepares_again(tmp_path: Path) -> None:
    prepare = FakePrepare()
    run_recipe(fake_recipe(prepare), tmp_path)
    assert run_recipe(fake_recipe(prepare), tmp_path, force=True) is not None
    assert prepare.calls == 2
    assert run_recipe(fake_recipe(prepare, version=2), tmp_path) is not None
    assert prepare.calls == 3


def test_failing_prepare_leaves_no_half_written_dataset(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="network"):
        run_recipe(fake_recipe(FakePrepare(fail=True)), tmp_path)
    assert not (tmp_path / "fake").exists()
    assert not (tmp_path / ".fake.partial").exists()

    # a dataset that was prepared before survives a failed forced re-run untouched
    run_recipe(fake_recipe(FakePrepare("good")), tmp_path)
    with pytest.raises(RuntimeError):
        run_recipe(fake_recipe(FakePrepare("bad", fail=True)), tmp_path, force=True)
    assert (tmp_path / "fake" / "train" / "a" / "x.txt").read_text() == "good"
    assert (tmp_path / "fake" / "SUMMARY.json").exists()

    # and the next successful run replaces the leftovers of the failed one
    assert run_recipe(fake_recipe(FakePrepare("new")), tmp_path, force=True) is not None
    assert (tmp_path / "fake" / "train" / "a" / "x.txt").read_text() == "new"
    assert not (tmp_path / ".fake.partial").exists()

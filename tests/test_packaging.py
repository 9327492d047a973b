"""The README's device install, as written: ``make dist`` builds a wheel, the wheel installs into a
clean environment with the ``device`` extra, and a shipped bundle copied beside it embeds real
recordings there, with no torch, tensorflow or librosa installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE_DIST = ROOT / "scripts" / "make_dist.sh"
HEAVY = ("torch", "tensorflow", "librosa", "scipy")


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command outside the checkout (nothing of it on ``sys.path``); its stdout."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        argv, cwd=cwd, env={**environ, **(env or {})}, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done.stdout


def make_dist(out: Path) -> list[str]:
    run(["bash", str(MAKE_DIST), str(out)], cwd=ROOT, env={"PYTHON": sys.executable})
    return sorted(p.name for p in out.iterdir())


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    make_dist(out)
    return out


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("edgesiam-*-py3-none-any.whl")
    return wheel


def test_make_dist_builds_one_sdist_and_one_wheel_each_time(dist: Path) -> None:
    first = sorted(p.name for p in dist.iterdir())
    assert len(first) == 2 and first[0].endswith(".whl") and first[1].endswith(".tar.gz")
    assert make_dist(dist) == first


def test_the_wheel_holds_every_package_file_and_the_extras(dist: Path) -> None:
    tracked = run(["git", "ls-files", "edgesiam"], cwd=ROOT).split()
    with zipfile.ZipFile(wheel_of(dist)) as whl:
        names = set(whl.namelist())
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(whl.read(meta).decode())
    assert set(tracked) <= names, sorted(set(tracked) - names)  # dashboard/static, py.typed too
    assert {"device", "audio", "serial"} <= set(metadata.get_all("Provides-Extra") or [])
    requires = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("sounddevice") and 'extra == "audio"' in r for r in requires)
    assert any(r.startswith("edgesiam[device]") and 'extra == "audio"' in r for r in requires)


def test_the_wheel_installs_on_a_clean_machine_and_embeds_with_a_copied_bundle(
    dist: Path, tmp_path: Path, audio_heldout: Path
) -> None:
    venv = tmp_path / "device-venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    run([*pip, f"{wheel_of(dist)}[device]"], cwd=tmp_path)
    python, edgesiam = str(venv / "bin" / "python"), str(venv / "bin" / "edgesiam")

    probe = (
        "import importlib.util, json, edgesiam; print(json.dumps({'file': edgesiam.__file__, "
        f"'heavy': [m for m in {HEAVY!r} if importlib.util.find_spec(m)], "
        "'sounddevice': bool(importlib.util.find_spec('sounddevice'))}))"
    )
    found = json.loads(run([python, "-c", probe], cwd=tmp_path))
    assert found["heavy"] == [] and not found["sounddevice"]
    assert Path(found["file"]).is_relative_to(venv)  # the installed package, not the checkout
    assert "embed" in run([edgesiam, "--help"], cwd=tmp_path)

    bundle = shutil.copytree(ROOT / "export" / "events", tmp_path / "bundles" / "events")
    out = tmp_path / "embeddings.npz"
    run([edgesiam, "embed", str(bundle), str(audio_heldout), "-o", str(out), "-q"], cwd=tmp_path)
    with np.load(out) as npz:
        embeddings, labels = npz["embeddings"], npz["labels"]
    assert embeddings.shape == (len(list(audio_heldout.rglob("*.wav"))), 64)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-4)
    assert len(set(labels.tolist())) == 6

    # a microphone device adds the audio extra to the installed wheel (what MissingExtraError says)
    run([*pip, "edgesiam[audio]"], cwd=tmp_path)
    assert "sounddevice" in run([python, "-m", "pip", "list"], cwd=tmp_path)

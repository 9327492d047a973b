"""Shared fixtures: small generated dataset folders that follow the dataset-folder contract, and
one tiny trained audio model with its int8 bundle (trained and exported once per session).

Each label of the audio set is a 'voice' (a harmonic tone with its own pitch and spectral tilt, with
vibrato and noise); each label of the sensor set is a motion pattern on 6 IMU channels. They are
easy enough that a tiny encoder learns them in seconds, so tests can check that training works.

Under ``CI`` (set by CI services) Hypothesis runs derandomised, without its example database, so a
new random find cannot fail a landing; ``make reliability`` (``EDGESIAM_RELIABILITY=full``) and local
runs keep exploring. A find that was fixed stays as an explicit ``@example``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import settings

from tests.fuzz.scale import DETERMINISTIC

settings.register_profile(
    "edgesiam-ci", derandomize=True, database=None, deadline=None, print_blob=True
)
if DETERMINISTIC:
    settings.load_profile("edgesiam-ci")


_ROOT_LEVEL = logging.getLogger().level


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in-process (``edgesiam run --log-level error``, also from a module-scoped
    fixture) configures the root logger; every test starts from the root logger's level of the
    session's start, so its log assertions see its records."""
    root = logging.getLogger()
    root.setLevel(_ROOT_LEVEL)
    handlers = list(root.handlers)
    yield
    root.setLevel(_ROOT_LEVEL)
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)


def make_voice(
    f0: float, tilt: float, seconds: float, rate: int, rng: np.random.Generator
) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    vibrato = 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
    phase = 2 * np.pi * np.cumsum(f0 * vibrato) / rate
    x = sum((h**-tilt) * np.sin(h * phase) for h in range(1, 12) if h * f0 < rate / 2)
    x = x / np.max(np.abs(x)) * 0.5 + 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def write_audio_dataset(
    root: Path,
    labels: int = 6,
    per_label: int = 4,
    seconds: float = 1.3,
    seed: int = 0,
    rate: int = 16000,
) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(labels):
        f0 = 110 * 2 ** (i / 3)
        tilt = 0.5 + 0.25 * (i % 4)
        folder = root / f"voice{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_label):
            x = make_voice(
                f0 * rng.uniform(0.97, 1.03), tilt, seconds * rng.uniform(0.8, 1.2), rate, rng
            )
            sf.write(folder / f"g{j % 2}__take{j}.wav", x, rate, subtype="PCM_16")
    return root


def make_motion(kind: int, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    freq = 0.8 + 0.6 * kind
    amp = np.array([1.0, 0.5, 0.2, 0.3, 0.6, 0.1]) * (1 + 0.3 * (kind % 3))
    phase = np.linspace(0, np.pi * (kind % 4) / 2, 6)
    x = amp * np.sin(2 * np.pi * freq * t[:, None] + phase) + 0.05 * rng.standard_normal((n, 6))
    x[:, 2] += 1.0  # gravity
    return x.astype(np.float32)


def write_sensor_dataset(
    root: Path,
    labels: int = 5,
    per_label: int = 4,
    seconds: float = 6.0,
    seed: int = 0,
    rate: int = 50,
) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    (root / "dataset.toml").write_text(
        f'modality = "sensor"\nsample_rate = {rate}\nchannels = {names!r}\n'.replace("'", '"')
    )
    for i in range(labels):
        folder = root / f"move{i}"
        folder.mkdir(exist_ok=True)
        for j in range(per_label):
            np.save(
                folder / f"s{j % 2}__rec{j}.npy", make_motion(i, int(seconds * rate), rate, rng)
            )
    return root


@pytest.fixture(scope="session")
def audio_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio_dataset(tmp_path_factory.mktemp("audio") / "train", seed=0)


@pytest.fixture(scope="session")
def audio_heldout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audio_heldout") / "test"
    return write_audio_dataset(root, labels=6, per_label=6, seed=1)


@pytest.fixture(scope="session")
def sensor_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sensor_dataset(tmp_path_factory.mktemp("sensor") / "train", seed=0)


def export_parser() -> argparse.ArgumentParser:
    from edgesiam.export.cli import add_export_parser

    parser = argparse.ArgumentParser(prog="edgesiam")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def run_export(*args: str) -> int:
    """``edgesiam export ARGS`` through the sub-command's own parser and ``cmd_export``."""
    parsed = export_parser().parse_args(["export", *args, "--quiet"])
    code: int = parsed.func(parsed)
    return code


@pytest.fixture(scope="session")
def tiny_audio_model(
    audio_dataset: Path, audio_heldout: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from edgesiam.train.config import TrainConfig
    from edgesiam.train.loop import train
    from tests.train.test_loop import audio_recipe

    out = tmp_path_factory.mktemp("tiny_audio_run")
    config = TrainConfig.model_validate(audio_recipe(audio_dataset, audio_heldout, epochs=2))
    train(config, out, progress=False, log=lambda _m: None)
    return out / "best.pt"


@pytest.fixture(scope="session")
def audio_bundle(
    tiny_audio_model: Path,
    audio_dataset: Path,
    audio_heldout: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    bundle = tmp_path_factory.mktemp("bundles") / "tiny-audio"
    code = run_export(
        str(tiny_audio_model),
        "-o",
        str(bundle),
        "--calib",
        str(audio_dataset),
        "--heldout",
        str(audio_heldout),
    )
    assert code == 0
    return bundle


def build_wheel(out: Path) -> Path:
    """This checkout as the wheel a device installs, built from a copy (no build/ left behind)."""
    root = Path(__file__).resolve().parents[1]
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root / "edgesiam", src / "edgesiam", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*cmd, "-w", str(out), str(src)], check=True, capture_output=True, timeout=600)
    (wheel,) = out.glob("edgesiam-*.whl")
    return wheel


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "arm64: the device install on aarch64 under qemu-user (run with `make test-arm64`)",
    )


# --- a real shipped bundle fed a generated voice (runtime, reliability and security tests) -------

EVENTS_BUNDLE = Path(__file__).resolve().parents[1] / "export" / "events"


def voice(seconds: float, seed: int) -> np.ndarray:
    """A generated voice (float32 in [-1, 1]) at 16 kHz."""
    return make_voice(180.0, 0.7, seconds, 16000, np.random.default_rng(seed))


def to_pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()


@pytest.fixture(scope="session")
def events_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery for ``export/events`` with one label, ``voice``, enrolled from a generated clip."""
    from edgesiam.model.interpreters import load_model
    from edgesiam.runtime.enrollment import enroll_recordings
    from edgesiam.runtime.gallery_store import GalleryStore, model_sha256

    folder = tmp_path_factory.mktemp("events_gallery")
    clip = folder / "voice.wav"
    sf.write(clip, voice(3.0, seed=1), 16000, subtype="PCM_16")
    embedder = load_model(EVENTS_BUNDLE)
    path = folder / "gallery.npz"
    store = GalleryStore(path, model_sha256(embedder.manifest))
    enroll_recordings(store, embedder, "voice", [clip])
    return path

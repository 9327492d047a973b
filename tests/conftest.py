"""Shared fixtures: small generated dataset folders that follow the dataset-folder contract (made by
``tests/support/signals.py``), one tiny trained audio model with its int8 bundle (trained and
exported once per session) and a gallery for the shipped ``export/events`` bundle.

Helpers that tests import live in ``tests/support/``; this module holds only fixtures and hooks.

Under ``CI`` (set by CI services) Hypothesis runs derandomised, without its example database, so a
new random find cannot fail a landing; ``make reliability`` (``EDGESIAM_RELIABILITY=full``) and local
runs keep exploring. A find that was fixed stays as an explicit ``@example``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from hypothesis import settings

from tests.support.cli import cohort_always_shipped, run_export
from tests.support.fuzz_scale import DETERMINISTIC
from tests.support.paths import EVENTS_BUNDLE
from tests.support.signals import (
    VOICE_RATE,
    voice,
    write_audio_dataset,
    write_heldout_stream,
    write_sensor_dataset,
)

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


@pytest.fixture(scope="session")
def audio_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio_dataset(tmp_path_factory.mktemp("audio") / "train", seed=0)


@pytest.fixture(scope="session")
def audio_heldout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audio_heldout") / "test"
    return write_audio_dataset(root, labels=6, per_label=6, seed=1)


@pytest.fixture(scope="session")
def heldout_stream(audio_heldout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WAV of held-out takes of enrolled and never-enrolled voices (the device-run tests)."""
    return write_heldout_stream(audio_heldout, tmp_path_factory.mktemp("heldout") / "stream.wav")


@pytest.fixture(scope="session")
def sensor_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sensor_dataset(tmp_path_factory.mktemp("sensor") / "train", seed=0)


@pytest.fixture(scope="session")
def tiny_audio_model(
    audio_dataset: Path, audio_heldout: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from edgesiam.train.config import TrainConfig
    from edgesiam.train.loop import train
    from tests.support.recipes import audio_recipe

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


@pytest.fixture(scope="session")
def cohort_audio_bundle(
    tiny_audio_model: Path,
    audio_dataset: Path,
    audio_heldout: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The tiny audio bundle with a score-normalisation cohort and its normalised thresholds
    (the export ships one only where it lowers the held-out EER: made to here)."""
    from edgesiam.export import bundle_writer

    bundle = tmp_path_factory.mktemp("bundles") / "tiny-audio-cohort"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bundle_writer, "evaluate_cohort", cohort_always_shipped)
        code = run_export(
            str(tiny_audio_model), "-o", str(bundle), "--calib", str(audio_dataset),
            "--heldout", str(audio_heldout),
        )  # fmt: skip
    assert code == 0
    return bundle


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "arm64: the device install on aarch64 under qemu-user (run with `make test-arm64`)",
    )


@pytest.fixture(scope="session")
def events_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery for ``export/events`` with one label, ``voice``, enrolled from a generated clip."""
    from edgesiam.model.interpreters import load_model
    from edgesiam.runtime.enrollment import enroll_recordings
    from edgesiam.runtime.gallery_store import GalleryStore, model_sha256

    folder = tmp_path_factory.mktemp("events_gallery")
    clip = folder / "voice.wav"
    sf.write(clip, voice(3.0, seed=1), VOICE_RATE, subtype="PCM_16")
    embedder = load_model(EVENTS_BUNDLE)
    path = folder / "gallery.npz"
    store = GalleryStore(path, model_sha256(embedder.manifest))
    enroll_recordings(store, embedder, "voice", [clip])
    return path

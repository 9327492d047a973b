"""The open-set margin rule: a window matches only when its best label beats the second best by
``matching.margin`` (the real runtime, the shipped events bundle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.model.interpreters import load_model
from edgesiam.runtime.config import RuntimeConfig
from edgesiam.runtime.enrollment import enroll_recordings
from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.publishers import NullPublisher
from tests.support.paths import EVENTS_BUNDLE
from tests.support.signals import make_voice, voice


@pytest.fixture
def look_alikes(tmp_path: Path) -> Path:
    """Two labels enrolled from the same voice, one from a very different sound."""
    embedder = load_model(EVENTS_BUNDLE)
    store = GalleryStore(tmp_path / "g.npz", model_sha256(embedder.manifest))
    for label, seed in (("anna", 1), ("anne", 2)):
        path = tmp_path / f"{label}.wav"
        sf.write(path, voice(3.0, seed=seed), 16000, subtype="PCM_16")
        enroll_recordings(store, embedder, label, [path])
    low = tmp_path / "low.wav"
    sf.write(low, make_voice(90, 0.4, 3.0, 16000, np.random.default_rng(0)), 16000)
    enroll_recordings(store, embedder, "low", [low])
    return store.path


def run(gallery: Path, stream: Path, state: Path, margin: float) -> int:
    config = RuntimeConfig.model_validate(
        {
            "bundle": str(EVENTS_BUNDLE),
            "gallery": str(gallery),
            "state_dir": str(state),
            "source": {"type": "file", "path": str(stream)},
            "mqtt": {"enabled": False},
            "matching": {"margin": margin},
        }
    )
    return Runtime(config, publisher=NullPublisher).run().events


def test_a_window_two_labels_claim_alike_matches_neither(look_alikes: Path, tmp_path: Path) -> None:
    stream = tmp_path / "stream.wav"
    sf.write(stream, voice(4.0, seed=9), 16000, subtype="PCM_16")
    assert run(look_alikes, stream, tmp_path / "s0", margin=0.0) >= 1
    assert run(look_alikes, stream, tmp_path / "s1", margin=0.2) == 0


def test_a_clear_winner_still_matches_with_the_margin(look_alikes: Path, tmp_path: Path) -> None:
    stream = tmp_path / "low-stream.wav"
    sf.write(stream, make_voice(90, 0.4, 4.0, 16000, np.random.default_rng(5)), 16000)
    assert run(look_alikes, stream, tmp_path / "s", margin=0.05) >= 1


def test_the_margin_is_validated() -> None:
    with pytest.raises(ValueError, match="margin"):
        RuntimeConfig.model_validate(
            {"bundle": "b", "source": {"type": "stdin"}, "matching": {"margin": -0.1}}
        )

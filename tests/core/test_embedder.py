"""The model seam: both kinds of model the core feeds satisfy :class:`DeviceEmbedder`, and a
stand-in that does is fed the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.frontend import FrontEnd, LogMelFrontEnd, LogMelParams
from edgesiam.model.embedders import embed_recording
from edgesiam.model.interpreters import load_model


class _Energy:
    """A stand-in model: each window's mean feature value per channel, L2-normalised."""

    modality = "audio"
    sample_rate = 16000
    window = 16000
    hop = 8000
    channels = 1
    frontend: FrontEnd = LogMelFrontEnd(LogMelParams(n_mels=8))

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        out = features.mean(axis=2) + 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_bundle_and_checkpoint_are_device_embedders(
    audio_bundle: Path, tiny_audio_model: Path
) -> None:
    from edgesiam.train.checkpoint import CheckpointEmbedder

    assert isinstance(load_model(audio_bundle), DeviceEmbedder)
    assert isinstance(CheckpointEmbedder(tiny_audio_model), DeviceEmbedder)


def test_an_object_without_embed_features_is_not_one() -> None:
    class NoModel:
        modality, sample_rate, window, hop, channels = "audio", 16000, 1, 1, 1

    assert not isinstance(NoModel(), DeviceEmbedder)
    assert isinstance(_Energy(), DeviceEmbedder)


def test_a_stand_in_is_fed_windows_through_its_front_end() -> None:
    x = np.random.default_rng(0).standard_normal(40000).astype(np.float32) * 0.1
    embedding = embed_recording(_Energy(), x)
    assert embedding.shape == (8,)
    assert np.isclose(np.linalg.norm(embedding), 1.0)

"""Fixtures of the export tests (the tiny model and its bundle live in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesiam.data.readers import scan_dataset
from edgesiam.model.embedders import EmbeddedDataset, embed_dataset


@pytest.fixture(scope="session")
def torch_reference(tiny_audio_model: Path, audio_heldout: Path) -> EmbeddedDataset:
    """The workstation path: the torch checkpoint's recording embeddings of the held-out set."""
    from edgesiam.train.checkpoint import CheckpointEmbedder

    embedder = CheckpointEmbedder(tiny_audio_model)
    return embed_dataset(embedder, scan_dataset(audio_heldout), progress=False)

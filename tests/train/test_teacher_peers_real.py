"""aisfx and Resemblyzer with their published weights on real recordings (slow: `make test-slow`;
aisfx downloads its wheel once into data/.cache; Resemblyzer needs the peers venv, made by
scripts/make_peers_venv.sh, and is skipped only when that venv is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesiam.cli import main
from edgesiam.data.readers import read_audio, scan_dataset
from edgesiam.evaluation import evaluate
from edgesiam.train.teachers.aisfx import fetch_weights, load_aisfx, read_checkpoint, upstream_key
from edgesiam.train.teachers.embed import teacher_embeddings
from edgesiam.train.teachers.resemblyzer import ResemblyzerPeer

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[2]
DATA = REPO / "data"
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"


def real_voices(folder: Path, labels: int, per_label: int) -> tuple[list[Path], list[str]]:
    """The first clips of the first real voices (KLettres / KTuberling): the game-voice packs
    (hw-*) are pitch-processed actors."""
    by_label: dict[str, list[Path]] = {}
    for rec in scan_dataset(folder).recordings:
        by_label.setdefault(rec.label, []).append(rec.path)
    voices = [k for k in sorted(by_label) if not k.startswith("hw-")]
    chosen = [k for k in voices if len(by_label[k]) >= per_label][:labels]
    paths = [p for label in chosen for p in by_label[label][:per_label]]
    return paths, [label for label in chosen for _ in range(per_label)]


def test_aisfx_published_weights_fill_every_parameter_and_retrieve_real_events() -> None:
    model = load_aisfx(DATA)
    published = read_checkpoint(fetch_weights(DATA))
    backbone = {k for k in published if not k.startswith("fc.")}
    assert {upstream_key(k) for k in model.state_dict()} == backbone and len(backbone) == 48

    assert main(["data", "prepare", "events", "--root", str(DATA)]) == 0
    info = scan_dataset(DATA / "events" / "test")
    paths = [r.path for r in info.recordings]
    labels = [r.label for r in info.recordings]
    embeddings = np.stack([model.embed(read_audio(p, model.sample_rate)) for p in paths])
    metrics = evaluate(embeddings, labels, [None] * len(labels), episodes=200)
    print(f"aisfx on {len(paths)} real events: LOO top-1 {metrics['loo_top1']:.3f}")
    assert metrics["loo_top1"] >= 0.85  # 0.947 measured on the shipped events test set


@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="no peers venv (scripts/make_peers_venv.sh)")
def test_resemblyzer_in_the_peers_venv_tells_real_speakers_apart_and_is_cached(
    tmp_path: Path,
) -> None:
    assert main(["data", "prepare", "speech", "--root", str(DATA)]) == 0
    folder = DATA / "speech" / "test"
    paths, labels = real_voices(folder, labels=4, per_label=4)
    peer = ResemblyzerPeer(PEERS_PYTHON)
    embeddings = peer.embed_files(paths, progress=False)
    assert embeddings.shape == (16, 256)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    scores = embeddings @ embeddings.T
    owners = np.array(labels)
    same = owners[:, None] == owners[None, :]
    genuine = scores[same & ~np.eye(len(paths), dtype=bool)]
    assert genuine.mean() > scores[~same].mean() + 0.1, (genuine.mean(), scores[~same].mean())

    cached = teacher_embeddings(peer, folder, paths, tmp_path, progress=False)
    np.testing.assert_allclose(cached, embeddings, atol=1e-5)

"""``edgesiam eval`` reads the folder once: one progress bar, the baseline from the same pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesiam.cli import main
from edgesiam.data.readers import scan_dataset
from edgesiam.model.embedders import baseline_embeddings, embed_dataset
from edgesiam.model.interpreters import load_model

EVENTS = Path(__file__).resolve().parents[1] / "export" / "events"


def test_eval_shows_one_reading_bar(
    audio_heldout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(EVENTS), str(audio_heldout), "--episodes", "20"]) == 0
    out = capsys.readouterr()
    assert out.err.count(f"reading {audio_heldout.name}:   0%") == 1, out.err
    assert "mfcc-stats" in out.out


def test_the_baseline_of_the_same_pass_is_the_baseline(audio_heldout: Path) -> None:
    embedder = load_model(EVENTS)
    both = embed_dataset(embedder, scan_dataset(audio_heldout), progress=False, baseline=True)
    alone = baseline_embeddings(embedder, scan_dataset(audio_heldout), progress=False)
    assert both.baseline is not None and np.array_equal(both.baseline, alone)
    assert embed_dataset(embedder, scan_dataset(audio_heldout), progress=False).baseline is None

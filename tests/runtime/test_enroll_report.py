"""``enroll`` reports each label's closest other label and warns, with what to do, when two labels
would be confused at the threshold ``run`` would use (the shipped events bundle, real clips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.cli import main
from tests.support.paths import EVENTS_BUNDLE
from tests.support.signals import make_voice, voice


def clip(path: Path, x: np.ndarray) -> str:
    sf.write(path, x, 16000, subtype="PCM_16")
    return str(path)


def test_look_alike_labels_are_flagged_with_a_suggested_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    for label, seeds in (("anna", (1, 2)), ("anne", (3, 4))):  # the same generated voice
        (data / label).mkdir(parents=True)
        for seed in seeds:
            clip(data / label / f"{seed}.wav", voice(3.0, seed=seed))
    (data / "bell").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        t = np.arange(48000) / 16000
        x = 0.4 * np.sin(2 * np.pi * 2400 * t) * np.exp(-t) + 0.01 * rng.standard_normal(48000)
        clip(data / "bell" / f"{i}.wav", x.astype(np.float32))
    gallery = tmp_path / "g.npz"
    base = ["enroll", "--bundle", str(EVENTS_BUNDLE), "--gallery", str(gallery)]
    code = main([*base, "--from-dataset", str(data)])
    assert code == 0
    out, err = capsys.readouterr()
    # every label names its closest other label, the first enrolled one too
    assert out.count("closest other label:") == 3
    assert "closest other label: anne" in out and "closest other label: anna" in out
    assert "'anna' and 'anne' would be confused" in err
    assert "'anne' and 'anna' would be confused" in err
    assert "edgesiam calibrate" in err and "matching.margin" in err
    assert "'bell' and" not in err


def test_distinct_labels_get_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gallery = tmp_path / "g.npz"
    base = ["enroll", "--bundle", str(EVENTS_BUNDLE), "--gallery", str(gallery)]
    rng = np.random.default_rng(5)
    low = clip(tmp_path / "low.wav", make_voice(110, 0.5, 3.0, 16000, rng))
    noise = clip(tmp_path / "hiss.wav", (0.3 * rng.standard_normal(48000)).astype(np.float32))
    assert main([*base, "--label", "low", low]) == 0
    assert main([*base, "--label", "hiss", noise]) == 0
    out, err = capsys.readouterr()
    assert "closest other label: low" in out
    assert "would be confused" not in err

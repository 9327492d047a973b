"""Thresholds that hold across channels: the strictest over several held-out folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.export.thresholds import strictest, threshold_set
from edgesiam.model.bundle import ThresholdSet, load_manifest
from tests.support.cli import run_export


def _set(impostor_shift: float, n: int = 4000, seed: int = 0) -> ThresholdSet:
    rng = np.random.default_rng(seed)
    genuine = rng.normal(0.8, 0.1, 500)
    impostor = rng.normal(0.3 + impostor_shift, 0.1, n)
    return threshold_set(genuine, impostor, "window-vs-recording")


def test_strictest_takes_the_highest_threshold_of_each_target() -> None:
    clean, phone = _set(0.0), _set(0.3, n=400, seed=1)
    both = strictest([clean, phone])
    for key in both.at_fmr:
        assert both.at_fmr[key] == max(clean.at_fmr[key], phone.at_fmr[key])
        assert both.at_fmr[key] >= clean.at_fmr[key]
    assert both.at_fmr["0.01"] == phone.at_fmr["0.01"]
    # the reference set's EER stays; the counts add up; support needs every set's trials
    assert (both.eer, both.eer_threshold) == (clean.eer, clean.eer_threshold)
    assert both.impostor == 4400
    assert clean.supported["0.001"] and not phone.supported["0.001"]
    assert both.supported["0.01"] and not both.supported["0.001"]


def test_strictest_refuses_sets_of_other_scores() -> None:
    rng = np.random.default_rng(0)
    a = threshold_set(rng.random(50), rng.random(50), "window-vs-recording")
    b = threshold_set(rng.random(50), rng.random(50), "window-vs-recording", "adaptive-s-norm")
    with pytest.raises(ValueError, match="cannot be combined"):
        strictest([a, b])
    with pytest.raises(ValueError, match="no threshold set"):
        strictest([])


def _through_a_channel(src: Path, dst: Path) -> Path:
    """The held-out folder as a cheap line would carry it: band-limited, noisy, clipped."""
    rng = np.random.default_rng(7)
    for wav in sorted(src.rglob("*.wav")):
        x, rate = sf.read(wav, dtype="float32")
        spectrum = np.fft.rfft(x)
        freqs = np.fft.rfftfreq(len(x), 1 / rate)
        spectrum[(freqs < 300) | (freqs > 3400)] = 0
        y = np.fft.irfft(spectrum, len(x)) + 0.02 * rng.standard_normal(len(x))
        out = dst / wav.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, np.clip(3 * y, -1, 1), rate, subtype="PCM_16")
    return dst


def test_export_thresholds_hold_on_every_threshold_folder(
    tiny_audio_model: Path, audio_dataset: Path, audio_heldout: Path, tmp_path: Path
) -> None:
    phone = _through_a_channel(audio_heldout, tmp_path / "line" / "test")
    bundles = {}
    for name, heldout, extra in (
        ("clean", audio_heldout, []),
        ("phone", phone, ["--force"]),  # only its thresholds matter here
        ("both", audio_heldout, ["--threshold-data", str(phone)]),
    ):
        out = tmp_path / "bundles" / name
        run_export(
            str(tiny_audio_model), "-o", str(out), "--calib", str(audio_dataset),
            "--heldout", str(heldout), *extra,
        )  # fmt: skip
        bundles[name] = load_manifest(out).thresholds
    clean, line, both = bundles["clean"], bundles["phone"], bundles["both"]
    for kind in ("recording", "window"):
        found = getattr(both, kind).at_fmr
        for key, value in found.items():
            assert value == pytest.approx(
                max(getattr(clean, kind).at_fmr[key], getattr(line, kind).at_fmr[key])
            ), (kind, key)
        assert getattr(both, kind).eer == pytest.approx(getattr(clean, kind).eer)
    assert str(phone.name) in both.data and both.data.startswith(clean.data)
    assert both.labels == clean.labels and both.recordings == clean.recordings

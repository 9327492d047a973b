"""``edgesiam eval`` reports the window-level threshold the runtime would use (the shipped events
bundle on generated recordings: no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgesiam.cli import main
from edgesiam.core.gate import EnergyGate
from edgesiam.core.windowing import frame
from edgesiam.data.readers import read_audio, scan_dataset
from edgesiam.model.interpreters import load_model
from edgesiam.window_thresholds import window_thresholds
from tests.support.paths import EVENTS_BUNDLE
from tests.support.signals import write_audio_dataset


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_audio_dataset(tmp_path_factory.mktemp("wt") / "data", labels=4, per_label=3)
    silent = root / "voice0" / "silent__take9.wav"  # all silent: every window is gated
    import soundfile as sf

    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    return root


def test_eval_reports_the_window_level_threshold_for_the_target_fmr(
    voices: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.json"
    code = main(["eval", str(EVENTS_BUNDLE), str(voices), "--json", str(out), "--no-baseline",
                 "--episodes", "20", "-q", "--target-fmr", "0.01"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    measured = json.loads(out.read_text())["window_thresholds"]
    assert measured["trials"] == "window-vs-template"
    assert set(measured["at_fmr"]) == {"0.01", "0.001", "0.0001"}
    value = measured["at_fmr"]["0.01"]
    assert (
        f"FMR 0.01    {value:.4f}  <- target FMR 0.01 on this data: run --threshold {value:.4f}"
        in text
    )
    manifest = json.loads((EVENTS_BUNDLE / "manifest.json").read_text())
    own = manifest["thresholds"]["window"]["at_fmr"]["0.01"]
    assert f"the bundle's own calibration at FMR 0.01: {own:.4f}" in text
    assert measured["gated"] >= 2  # the silent clip's windows are not scored, as on a device
    # the recording-level EER threshold is still reported, and differs from the window one
    recording = json.loads(out.read_text())["systems"]["edgesiam"]["eer_threshold"]
    assert recording != pytest.approx(measured["eer_threshold"], abs=1e-3)


def test_every_active_window_is_scored_against_every_label(voices: Path) -> None:
    """What the runtime scores: gated windows never, each active window once per label."""
    embedder = load_model(EVENTS_BUNDLE)
    info = scan_dataset(voices)
    measured = window_thresholds(embedder, info, gate=EnergyGate.for_modality("audio"))
    frames = sum(len(frame(read_audio(r.path, 16000), embedder.window, embedder.hop))
                 for r in info.recordings)  # fmt: skip
    active = measured.windows - measured.gated
    assert measured.windows == frames and measured.gated >= 2 and active > 0
    assert measured.genuine == active  # every label has another recording
    assert measured.impostor == 3 * active  # one trial per other label
    assert measured.at_fmr["0.01"] <= measured.at_fmr["0.001"] <= measured.at_fmr["0.0001"]
    assert not measured.supported["0.0001"]  # far fewer than 30 000 impostor trials
    no_gate = window_thresholds(embedder, info, gate=EnergyGate(enabled=False))
    assert no_gate.gated == 0 and no_gate.genuine == frames

"""Speed-perturbed copies: new labels, the right length and pitch, made once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.cli import main
from edgesiam.data.readers import scan_dataset
from edgesiam.data.speed import render_speeds
from edgesiam.errors import DataError

RATE = 16000


def _tone(path: Path, hz: float, seconds: float = 1.0) -> None:
    t = np.arange(int(RATE * seconds)) / RATE
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.5 * np.sin(2 * np.pi * hz * t), RATE, subtype="PCM_16")


def _peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / RATE)[np.argmax(spectrum)])


@pytest.fixture
def voices(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    _tone(root / "alice" / "a1.wav", 200.0)
    _tone(root / "alice" / "a2.wav", 210.0)
    _tone(root / "bob" / "b1.wav", 120.0)
    return root


def test_each_speed_is_a_new_label_with_pitch_and_length_moved(
    voices: Path, tmp_path: Path
) -> None:
    out = tmp_path / "speed"
    assert render_speeds(voices, out, [0.8, 1.25], progress=False) == 6
    info = scan_dataset(out)
    assert sorted(info.labels) == ["alice@0.8", "alice@1.25", "bob@0.8", "bob@1.25"]
    fast, rate = sf.read(out / "alice@1.25" / "a1.wav")
    slow, _ = sf.read(out / "alice@0.8" / "a1.wav")
    assert rate == RATE
    assert len(fast) == pytest.approx(RATE / 1.25, abs=2)
    assert len(slow) == pytest.approx(RATE / 0.8, abs=2)
    assert _peak_hz(fast) == pytest.approx(250.0, abs=3)  # 200 Hz played 1.25 times faster
    assert _peak_hz(slow) == pytest.approx(160.0, abs=3)


def test_made_once_and_again_when_the_settings_change(voices: Path, tmp_path: Path) -> None:
    out = tmp_path / "speed"
    assert render_speeds(voices, out, [1.1], progress=False) == 3
    assert render_speeds(voices, out, [1.1], progress=False) == 0
    assert render_speeds(voices, out, [0.9], progress=False) == 3
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["alice@0.9", "bob@0.9"]


def test_a_speed_of_one_or_out_of_range_is_refused(voices: Path, tmp_path: Path) -> None:
    for speeds in ([1.0], [3.0], []):
        with pytest.raises(DataError, match="speeds"):
            render_speeds(voices, tmp_path / "x", speeds, progress=False)


def test_the_cli_writes_the_folder(
    voices: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert main(["data", "perturb", str(voices), "--speed", "0.9", "-o", str(out), "-q"]) == 0
    assert "3 speed copies written" in capsys.readouterr().out
    assert (out / "dataset.toml").is_file()

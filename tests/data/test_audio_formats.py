"""Phone recordings (MP3, M4A/AAC) and folders that hold more than recordings.

The MP3 files are written by the installed libsndfile (>= 1.1 encodes MPEG layer III) and the M4A
files by ffmpeg (``make apt`` installs it), so every decoder path runs on real encoded files.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.data import readers
from edgesiam.data.readers import (
    iter_recordings,
    list_recordings,
    modality_of,
    read_audio,
    scan_dataset,
)
from edgesiam.errors import DataError

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (run: make apt)")


def sine(rate: int, seconds: float, freq: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / rate)[int(np.argmax(spectrum))])


def write_mp3(path: Path, x: np.ndarray, rate: int) -> Path:
    sf.write(path, x, rate, format="MP3", subtype="MPEG_LAYER_III")
    return path


def write_m4a(path: Path, x: np.ndarray, rate: int) -> Path:
    """AAC in an MP4 container, as phones record it (ffmpeg's native AAC encoder)."""
    assert FFMPEG is not None
    wav = path.with_suffix(".src.wav")
    sf.write(wav, x, rate, subtype="PCM_16")
    subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", str(path)],
        check=True,
    )
    wav.unlink()
    return path


def test_mpeg_extensions_are_audio() -> None:
    for name in ("a.mp3", "b.M4A", "c.aac"):
        assert modality_of(Path(name)) == "audio"
    assert modality_of(Path("notes.txt")) is None


def test_mp3_is_read_and_resampled(tmp_path: Path) -> None:
    path = write_mp3(tmp_path / "saw.mp3", sine(44100, 1.5, 1000.0), 44100)
    y = read_audio(path, 16000)
    assert y.dtype == np.float32 and abs(y.size - 24000) <= 1200  # codec padding
    assert abs(dominant_freq(y, 16000) - 1000.0) < 5.0
    assert 0.3 < float(np.max(np.abs(y))) < 0.7


@needs_ffmpeg
def test_m4a_is_decoded_with_ffmpeg(tmp_path: Path) -> None:
    path = write_m4a(tmp_path / "bell.m4a", sine(48000, 1.0, 800.0), 48000)
    y = read_audio(path, 16000)
    assert abs(y.size - 16000) <= 800
    assert abs(dominant_freq(y, 16000) - 800.0) < 5.0
    part = read_audio(path, 16000, offset_s=0.5, max_seconds=0.25)
    assert abs(part.size - 4000) <= 16


@needs_ffmpeg
def test_mp3_falls_back_to_ffmpeg_when_libsndfile_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_mp3(tmp_path / "phone.mp3", sine(16000, 1.0, 600.0), 16000)
    formats = {k: v for k, v in sf.available_formats().items() if k != "MP3"}
    monkeypatch.setattr(readers.sf, "available_formats", lambda: formats)
    y = read_audio(path, 16000)
    assert abs(dominant_freq(y, 16000) - 600.0) < 5.0


def test_without_a_decoder_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m4a = tmp_path / "voice.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    mp3 = write_mp3(tmp_path / "voice.mp3", sine(16000, 0.5, 500.0), 16000)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(DataError, match=r"voice\.m4a: reading \.m4a files needs ffmpeg on PATH.*"):
        read_audio(m4a, 16000)
    formats = {k: v for k, v in sf.available_formats().items() if k != "MP3"}
    monkeypatch.setattr(readers.sf, "available_formats", lambda: formats)
    with pytest.raises(DataError, match=r"needs ffmpeg on PATH or a libsndfile >= 1\.1") as info:
        read_audio(mp3, 16000)
    assert "apt-get install ffmpeg" in str(info.value)


@needs_ffmpeg
def test_a_damaged_m4a_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.m4a"
    bad.write_bytes(b"not an mp4 at all" * 10)
    with pytest.raises(DataError, match=r"broken\.m4a: cannot decode audio with ffmpeg"):
        read_audio(bad, 16000)


def test_dataset_folders_read_mp3_and_skip_what_is_not_a_recording(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "workshop"
    for label, freq in (("saw", 700.0), ("bell", 1200.0)):
        (root / label).mkdir(parents=True)
        write_mp3(root / label / "take1.mp3", sine(22050, 1.0, freq), 22050)
        sf.write(root / label / "take2.wav", sine(16000, 1.0, freq), 16000)
    (root / "saw" / "notes.txt").write_text("recorded on the porch")
    (root / "bell" / ".DS_Store").write_bytes(b"\x00Bud1")
    (root / "bell" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "notes.txt").write_text("five sounds")
    with caplog.at_level(logging.WARNING):
        info = scan_dataset(root)  # on_error="fail": none of these is a failure
    assert info.label_counts() == {"bell": 2, "saw": 2}
    lines = [r.getMessage() for r in caplog.records if "not recordings" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "skipped 4 file(s)" in lines[0]
    assert "saw/notes.txt" in lines[0] and "bell/cover.jpg" in lines[0]
    assert "bell/.DS_Store" in lines[0]
    assert sorted(p.name for p, _ in info.skipped) == ["cover.jpg", "notes.txt", "notes.txt"]
    arrays = {(r.label, r.path.name): a for r, a in iter_recordings(info, 16000, progress=False)}
    assert abs(dominant_freq(arrays[("saw", "take1.mp3")], 16000) - 700.0) < 5.0
    assert abs(dominant_freq(arrays[("bell", "take1.mp3")], 16000) - 1200.0) < 5.0


def test_a_recording_directly_in_the_dataset_folder_is_still_an_error(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "a").mkdir(parents=True)
    sf.write(root / "a" / "1.wav", sine(16000, 0.2, 440.0), 16000)
    write_mp3(root / "stray.mp3", sine(16000, 0.5, 440.0), 16000)
    with pytest.raises(DataError, match=r"stray\.mp3: is a file directly in the dataset folder"):
        scan_dataset(root)


def test_list_recordings_of_one_label_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "hammer"
    folder.mkdir()
    write_mp3(folder / "b.mp3", sine(16000, 0.5, 300.0), 16000)
    sf.write(folder / "a.wav", sine(16000, 0.5, 300.0), 16000)
    (folder / "readme.txt").write_text("x")
    (folder / "gyro.csv").write_text("1,2,3\n")
    (folder / ".hidden.wav").write_bytes(b"")
    (folder / "old").mkdir()
    with caplog.at_level(logging.WARNING):
        found = list_recordings(folder, "audio")
    assert [p.name for p in found] == ["a.wav", "b.mp3"]
    assert caplog.text.count("not recordings") == 1
    assert "gyro.csv" in caplog.text and "readme.txt" in caplog.text and "old" in caplog.text
    assert ".hidden.wav" in caplog.text
    assert [p.name for p in list_recordings(folder)] == ["a.wav", "b.mp3", "gyro.csv"]
    with pytest.raises(DataError, match=r"holds no recordings \(\.csv \.npy\)"):
        list_recordings(folder / "old", "sensor")


def test_embed_reads_mp3_and_skips_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """``edgesiam embed`` (and ``eval``, through the same scan) on a folder as a phone leaves it."""
    from edgesiam.cli import main

    root = tmp_path / "phone"
    for label, freq in (("saw", 700.0), ("bell", 1200.0)):
        (root / label).mkdir(parents=True)
        write_mp3(root / label / "a.mp3", sine(44100, 1.0, freq), 44100)
        (root / label / "notes.txt").write_text("x")
    bundle = Path(__file__).resolve().parents[2] / "export" / "events"
    out = tmp_path / "e.npz"
    with caplog.at_level(logging.WARNING):
        code = main(["embed", str(bundle), str(root), "-o", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    data = np.load(out)
    assert sorted(data["labels"].tolist()) == ["bell", "saw"]
    assert [Path(p).suffix for p in data["paths"].tolist()] == [".mp3", ".mp3"]
    assert caplog.text.count("not recordings") == 1

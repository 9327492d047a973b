"""``edgesiam enroll`` as people record: folders, whole dataset folders, append or replace, phone
MP3s, and silent clips refused (templates from active windows only). Real shipped bundles."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.runtime.gallery_store import GalleryStore
from tests.support.cli import run_gallery
from tests.support.signals import make_motion, voice

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "export" / "events"
MOTION = ROOT / "export" / "motion"
RATE = 16000


def tone(freq: float, seconds: float, amp: float = 0.3, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


def wav(path: Path, x: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, subtype="PCM_16")
    return path


def labels_of(gallery: Path) -> dict[str, int]:
    return {info.label: info.recordings for info in GalleryStore(gallery).list()}


def test_a_silent_clip_is_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silence = wav(tmp_path / "silence.wav", np.zeros(3 * RATE, np.float32))
    gallery = tmp_path / "g.npz"
    args = ["enroll", "--bundle", EVENTS, "--gallery", gallery, "--label", "hammer", silence]
    code, _, err = run_gallery(capsys, *args)
    assert code == 2
    assert (
        "silence.wav: refused: no active window: all 11 of its windows are below the energy " in err
    )
    assert "-45 dBFS (the loudest is -200.0 dBFS)" in err
    assert not gallery.exists()
    code, _, err = run_gallery(capsys, *args, "--gate", "off")  # the user's choice: the gate is off
    assert code == 0, err
    assert "silence.wav: silent (RMS -200.0 dBFS" in err


def test_the_report_gives_active_windows_and_silence_does_not_dilute_the_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bell = tone(900.0, 1.0)
    wav(tmp_path / "bell.wav", bell)
    wav(tmp_path / "bell_tail.wav", np.concatenate([bell, np.zeros(4 * RATE, np.float32)]))
    gallery = tmp_path / "g.npz"
    common = ["enroll", "--bundle", EVENTS, "--gallery", gallery, "--json"]
    code, out, err = run_gallery(capsys, *common, "--label", "bell", tmp_path / "bell.wav")
    assert code == 0, err
    clean = json.loads(out)["clips"]
    assert clean == [{"name": "bell.wav", "windows": 3, "active": 3, "refused": None}]
    code, out, err = run_gallery(capsys, *common, "--label", "tail", tmp_path / "bell_tail.wav")
    assert code == 0, err
    result = json.loads(out)
    assert result["clips"] == [
        {"name": "bell_tail.wav", "windows": 19, "active": 4, "refused": None}
    ]
    assert any("only 4 of its 19 windows pass the energy gate" in w for w in result["warnings"])
    # the same sound: the quiet tail made no difference to the template
    assert result["closest"]["label"] == "bell" and result["closest"]["score"] > 0.99

    code, out, err = run_gallery(
        capsys, *common[:-1], "--label", "tail", tmp_path / "bell_tail.wav"
    )
    assert code == 0, err
    assert "  bell_tail.wav: 4 of 19 windows active" in out.splitlines()


def test_a_folder_of_clips_with_append_and_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    saw = tmp_path / "phone" / "saw"
    wav(saw / "saw1.wav", voice(1.5, seed=1))
    sf.write(saw / "saw2.mp3", voice(1.5, seed=2), RATE, format="MP3")
    (saw / "notes.txt").write_text("recorded on the porch")
    (saw / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    gallery = tmp_path / "g.npz"
    common = ["enroll", "--bundle", EVENTS, "--gallery", gallery, "--label", "saw"]
    with caplog.at_level(logging.WARNING):
        code, out, err = run_gallery(capsys, *common, saw)
    assert code == 0, err
    assert "enrolled 'saw' from 2 recordings" in out
    assert "  saw1.wav: 5 of 5 windows active" in out and "  saw2.mp3: " in out
    skipped = [r.getMessage() for r in caplog.records if "not recordings" in r.getMessage()]
    assert len(skipped) == 1 and "notes.txt" in skipped[0] and ".DS_Store" in skipped[0]

    more = wav(tmp_path / "saw3.wav", voice(1.2, seed=3))
    code, out, err = run_gallery(capsys, *common, "--append", more)
    assert code == 0, err
    assert "enrolled 'saw' from 3 recordings" in out
    assert GalleryStore(gallery).list()[0].sources == ["saw1.wav", "saw2.mp3", "saw3.wav"]

    code, out, err = run_gallery(capsys, *common, more)  # the default replaces
    assert code == 0, err
    assert "re-enrolled 'saw' from 1 recording" in out
    assert labels_of(gallery) == {"saw": 1}


def test_from_dataset_enrolls_every_label_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "workshop"
    for i, label in enumerate(("bell", "drill", "saw")):
        for j in range(2):
            wav(root / label / f"take{j}.wav", tone(300.0 * (i + 1) + 20 * j, 1.0))
    sf.write(root / "saw" / "phone.mp3", tone(900.0, 1.0), 44100, format="MP3")
    (root / "README.md").write_text("my workshop")
    (root / "drill" / "notes.txt").write_text("battery drill")
    gallery = tmp_path / "g.npz"
    common = ["enroll", "--bundle", EVENTS, "--gallery", gallery, "--from-dataset", root]
    code, out, err = run_gallery(capsys, *common, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert [x["label"] for x in result["labels"]] == ["bell", "drill", "saw"]
    assert [x["recordings"] for x in result["labels"]] == [2, 2, 3]
    assert result["failed"] == []
    assert labels_of(gallery) == {"bell": 2, "drill": 2, "saw": 3}

    # --append adds each folder's clips to its label; a silent label folder fails alone
    wav(root / "hum" / "dead-mic.wav", np.zeros(RATE, np.float32))
    code, out, err = run_gallery(capsys, *common, "--append")
    assert code == 1
    assert "enrolled 'saw' from 6 recordings" in out
    assert "edgesiam: error: label 'hum': " in err and "dead-mic.wav: refused" in err
    assert labels_of(gallery) == {"bell": 4, "drill": 4, "saw": 6}


def test_limits_are_checked_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ds"
    wav(root / "bell" / "a.wav", tone(500.0, 1.0))
    for j in range(11):
        wav(root / "saw" / f"{j:02d}.wav", tone(700.0 + j, 0.6))
    gallery = tmp_path / "g.npz"
    code, _, err = run_gallery(
        capsys, "enroll", "--bundle", EVENTS, "--gallery", gallery, "--from-dataset", root
    )
    assert code == 2 and "these would have more: saw (11)" in err
    assert not gallery.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "x"], "give --label NAME and the recordings"),
        ([], "give --label NAME and the recordings"),
        (["--from-dataset", "d", "--label", "x"], "give no --label or files"),
    ],
)
def test_enroll_arguments_are_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run_gallery(
        capsys, "enroll", "--bundle", EVENTS, "--gallery", tmp_path / "g.npz", *args
    )
    assert code == 2 and message in err


def test_sensor_clips_follow_the_runtime_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "moves"
    (root / "wave").mkdir(parents=True)
    header = "acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"
    for j in range(2):
        np.savetxt(
            root / "wave" / f"w{j}.csv",
            make_motion(2, 300, 50, rng),
            delimiter=",",
            header=header,
            comments="",
        )
    still = np.tile([0.0, 0.0, 1.0, 0.0, 0.0, 0.0], (300, 1))
    np.savetxt(root / "wave" / "still.csv", still, delimiter=",", header=header, comments="")
    gallery = tmp_path / "g.npz"
    common = ["enroll", "--bundle", MOTION, "--gallery", gallery, "--label", "wave"]
    code, out, err = run_gallery(capsys, *common, root / "wave")
    assert code == 0, err  # the runtime's gate is off for sensors: every window counts
    assert "enrolled 'wave' from 3 recordings" in out
    assert "  still.csv: 6 of 6 windows active" in out and "almost no motion" in err
    code, out, err = run_gallery(capsys, *common, "--gate", "on", root / "wave")
    assert code == 0, err
    assert "re-enrolled 'wave' from 2 recordings" in out
    assert "  still.csv: refused: no active window: none of its 6 windows moves more" in out

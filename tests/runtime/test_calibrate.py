"""``edgesiam calibrate``: per-label thresholds from the device's own background, through the real
pipeline and the shipped events bundle, used by ``run`` ahead of the config's thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.cli import main
from edgesiam.runtime.calibration_store import calibration_path, cohort_path
from edgesiam.runtime.config import RuntimeConfig
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.publishers import NullPublisher
from edgesiam.runtime.threshold_store import SetThresholds, ThresholdStore, thresholds_path
from tests.support.paths import EVENTS_BUNDLE
from tests.support.signals import make_voice, voice, write_sensor_dataset

PITCHES = ((160, 0.9), (170, 0.5), (190, 0.9), (200, 0.5), (165, 0.7), (195, 0.7))
"""Voices close to the enrolled one (180 Hz): other people who talk in the room."""


def room(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = np.concatenate([make_voice(f, tilt, 4.0, 16000, rng) for f, tilt in PITCHES])
    sf.write(path, x, 16000, subtype="PCM_16")
    return path


@pytest.fixture
def gallery(events_gallery: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "device" / "gallery.npz"
    copy.parent.mkdir()
    copy.write_bytes(events_gallery.read_bytes())
    return copy


LOOSE = 0.8
"""A hand-set threshold, as a user might pick: loose enough for the room's voices to get through."""


def config(
    gallery: Path, source: Path, state: Path, threshold: float | None = None
) -> RuntimeConfig:
    matching = {} if threshold is None else {"matching": {"threshold": threshold}}
    return RuntimeConfig.model_validate(
        {
            "bundle": str(EVENTS_BUNDLE),
            "gallery": str(gallery),
            "state_dir": str(state),
            "source": {"type": "file", "path": str(source)},
            "mqtt": {"enabled": False},
            **matching,
        }
    )


def events(
    gallery: Path, source: Path, tmp_path: Path, threshold: float | None = None
) -> tuple[int, Runtime]:
    runtime = Runtime(
        config(gallery, source, tmp_path / "state", threshold), publisher=NullPublisher
    )
    return runtime.run().events, runtime


def test_calibration_silences_the_room_and_keeps_the_enrolled_voice(
    gallery: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    background = tmp_path / "background"
    background.mkdir()
    room(background / "monday.wav", seed=3)
    tomorrow = room(tmp_path / "tomorrow.wav", seed=4)  # the same room, other recordings
    own = tmp_path / "own.wav"
    sf.write(own, voice(3.0, seed=1), 16000, subtype="PCM_16")
    before, _ = events(gallery, tomorrow, tmp_path, LOOSE)
    assert before > 0  # the hand-set threshold lets the room's voices through

    code = main(
        [
            "calibrate",
            "--bundle",
            str(EVENTS_BUNDLE),
            "--gallery",
            str(gallery),
            "--background",
            str(background),
            "--max-false-per-hour",
            "0.5",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "voice: threshold" in out and "leave-one-out" in out
    saved = json.loads(calibration_path(gallery).read_text())
    manifest = json.loads((EVENTS_BUNDLE / "manifest.json").read_text())
    assert saved["bundle_sha256"] == manifest["files"]["model.tflite"]
    assert saved["max_false_per_hour"] == 0.5 and saved["background"]["active"] > 0
    assert cohort_path(gallery).exists()

    after, runtime = events(gallery, tomorrow, tmp_path, LOOSE)  # the calibration wins over it
    assert after == 0
    threshold = saved["labels"]["voice"]["threshold"]
    assert threshold > LOOSE
    assert runtime.thresholds.for_label("voice") == pytest.approx(threshold)
    assert runtime.threshold_sources.source_of("voice").startswith("edgesiam calibrate")
    hits, _ = events(gallery, own, tmp_path, LOOSE)
    assert hits >= 1


def test_thresholds_set_over_mqtt_win_over_the_calibration(gallery: Path, tmp_path: Path) -> None:
    background = room(tmp_path / "bg.wav", seed=3)
    assert (
        main(
            [
                "calibrate",
                *("--bundle", str(EVENTS_BUNDLE), "--gallery", str(gallery)),
                *("--background", str(background)),
            ]
        )
        == 0
    )
    runtime = Runtime(config(gallery, background, tmp_path / "s1"), publisher=NullPublisher)
    runtime.outbox.close()
    sha = runtime.model_sha256
    ThresholdStore(thresholds_path(gallery), sha).save(SetThresholds(None, {"voice": 0.5}))
    runtime = Runtime(config(gallery, background, tmp_path / "s2"), publisher=NullPublisher)
    runtime.outbox.close()
    assert runtime.thresholds.for_label("voice") == 0.5
    assert runtime.threshold_sources.source_of("voice").startswith("set over MQTT")


def test_a_calibration_for_another_model_is_ignored(
    gallery: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = calibration_path(gallery)
    path.write_text(
        json.dumps(
            {
                "format": "edgesiam-calibration",
                "version": 1,
                "bundle_sha256": "0" * 64,
                "bundle_name": "other",
                "max_false_per_hour": 1.0,
                "score": "cosine",
                "hop_s": 0.5,
                "rule": {},
                "background": {},
                "labels": {},
            }
        )
    )
    clip = room(tmp_path / "bg.wav", seed=3)
    runtime = Runtime(config(gallery, clip, tmp_path / "s"), publisher=NullPublisher)
    runtime.outbox.close()
    assert runtime.calibration is None
    assert "calibrated for another model" in caplog.text


def test_calibrate_needs_a_gallery_and_a_background(tmp_path: Path) -> None:
    assert main(["calibrate", "--bundle", str(EVENTS_BUNDLE), "--background", "x.wav"]) == 2
    gallery = tmp_path / "g.npz"
    missing = str(tmp_path / "nothing-here")
    code = main(
        [
            "calibrate",
            "--bundle",
            str(EVENTS_BUNDLE),
            "--gallery",
            str(gallery),
            "--background",
            missing,
        ]
    )
    assert code == 2


def test_a_sensor_gallery_is_calibrated_from_a_folder_of_motion_recordings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgesiam.model.interpreters import load_model
    from edgesiam.runtime.enrollment import enroll_recordings
    from edgesiam.runtime.gallery_store import GalleryStore, model_sha256

    motion = EVENTS_BUNDLE.parent / "motion"
    data = write_sensor_dataset(tmp_path / "data", labels=3, per_label=3)
    embedder = load_model(motion)
    gallery = tmp_path / "g.npz"
    store = GalleryStore(gallery, model_sha256(embedder.manifest))
    enroll_recordings(store, embedder, "move0", sorted((data / "move0").glob("*.npy")))
    background = tmp_path / "background"  # the other movements, none of them move0
    background.mkdir()
    for other in ("move1", "move2"):
        (data / other).rename(background / other)
    base = ["calibrate", "--bundle", str(motion), "--gallery", str(gallery)]
    assert main([*base, "--background", str(background), "--max-false-per-hour", "1"]) == 0
    assert "move0: threshold" in capsys.readouterr().out
    saved = json.loads(calibration_path(gallery).read_text())
    assert saved["background"]["active"] > 0 and set(saved["labels"]) == {"move0"}


def test_a_label_its_own_clips_would_not_reach_is_flagged() -> None:
    from edgesiam.core.calibration import LabelCalibration
    from edgesiam.runtime.calibrate import report_lines
    from edgesiam.runtime.calibration_store import Calibration

    def label(name: str, hit_rate: float | None) -> LabelCalibration:
        return LabelCalibration(name, 0.99, 1e-5, 0.2, 500, 600, 0.97, hit_rate)

    found = Calibration(
        1 / 24,
        "cosine",
        0.5,
        {},
        {"seconds": 300.0, "windows": 600, "active": 500},
        {"alice": label("alice", 0.0), "bob": label("bob", 1.0), "carol": label("carol", None)},
    )
    lines = report_lines(found)
    flagged = [line for line in lines if "warning" in line]
    assert len(flagged) == 1 and "'alice' would rarely match" in flagged[0]
    assert any("own clips matched (leave-one-out): 0%" in line for line in lines)

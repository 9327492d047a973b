"""The device's ``enroll`` command end to end on a real runtime and the shipped bundles: several
clips, append or replace, silent clips refused with the reason, and IMU clips sent as CSV."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from edgesiam.runtime.gallery_store import GalleryStore
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.publishers import MemoryPublisher
from tests.support.runtime import make_config
from tests.support.signals import make_motion, voice

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "export" / "events"
MOTION = ROOT / "export" / "motion"
HEADER = "acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"


def wav_b64(x: np.ndarray, rate: int = 16000) -> str:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


def csv_b64(rows: np.ndarray, header: str | None = HEADER) -> str:
    buf = io.StringIO()
    np.savetxt(buf, rows, delimiter=",", fmt="%.5f", header=header or "", comments="")
    return base64.b64encode(buf.getvalue().encode()).decode()


def runtime_for(bundle: Path, source: Path, tmp_path: Path) -> tuple[Runtime, MemoryPublisher]:
    config = make_config(bundle, tmp_path / "gallery.npz", source, tmp_path / "state")
    runtime = Runtime(config, publisher=lambda o: MemoryPublisher("test-pi", o))
    assert isinstance(runtime.publisher, MemoryPublisher)
    return runtime, runtime.publisher


@pytest.fixture
def audio_device(tmp_path: Path) -> tuple[Runtime, MemoryPublisher]:
    source = tmp_path / "stream.wav"
    sf.write(source, voice(2.0, seed=9), 16000, subtype="PCM_16")
    return runtime_for(EVENTS, source, tmp_path)


def test_several_clips_append_and_replace_over_the_command(
    audio_device: tuple[Runtime, MemoryPublisher], tmp_path: Path
) -> None:
    runtime, pub = audio_device
    clips = [
        {"name": "saw1.wav", "wav_base64": wav_b64(voice(1.5, seed=1))},
        {"name": "saw2.wav", "wav_base64": wav_b64(voice(1.5, seed=2))},
    ]
    first = pub.command("enroll", {"label": "saw", "clips": clips})
    assert first["ok"], first
    result: dict[str, Any] = first["result"]
    assert result["recordings"] == 2 and result["replaced"] is False
    assert result["clips"] == [
        {"name": "saw1.wav", "windows": 5, "active": 5, "refused": None},
        {"name": "saw2.wav", "windows": 5, "active": 5, "refused": None},
    ]
    more = {"name": "saw3.wav", "wav_base64": wav_b64(voice(1.0, seed=3))}
    added = pub.command("enroll", {"label": "saw", "clips": [more], "append": True})
    assert added["ok"] and added["result"]["recordings"] == 3
    store = GalleryStore(tmp_path / "gallery.npz")
    assert store.list()[0].sources == ["saw1.wav", "saw2.wav", "saw3.wav"]
    assert runtime.gallery.counts() == {"saw": 3}

    replaced = pub.command("enroll", {"label": "saw", "wav_base64": more["wav_base64"]})
    assert replaced["ok"] and replaced["result"]["recordings"] == 1
    assert replaced["result"]["replaced"] is True and runtime.gallery.counts() == {"saw": 1}
    listed = pub.command("list", {})["result"]
    assert listed["modality"] == "audio" and listed["model"] == "events"


def test_a_silent_clip_is_refused_over_the_command(
    audio_device: tuple[Runtime, MemoryPublisher], tmp_path: Path
) -> None:
    runtime, pub = audio_device
    silent = {"name": "dead-mic.wav", "wav_base64": wav_b64(np.zeros(32000, np.float32))}
    refused = pub.command("enroll", {"label": "hammer", "clips": [silent]})
    assert refused["ok"] is False and refused["error_code"] == "failed"
    assert refused["error"].startswith("dead-mic.wav: refused: no active window: all 7 of its")
    assert "/tmp" not in refused["error"]
    assert not (tmp_path / "gallery.npz").exists()

    good = {"name": "hammer.wav", "wav_base64": wav_b64(voice(1.0, seed=4))}
    partly = pub.command("enroll", {"label": "hammer", "clips": [good, silent]})
    assert partly["ok"], partly
    assert partly["result"]["recordings"] == 1
    assert partly["result"]["clips"][1]["refused"].startswith("no active window")
    assert any(w.startswith("dead-mic.wav: refused") for w in partly["result"]["warnings"])
    assert GalleryStore(tmp_path / "gallery.npz").list()[0].sources == ["hammer.wav"]
    assert (
        runtime.matcher.gate.skipped == 0
    )  # the runtime's own gate was not used up by the enrolment


def test_an_imu_device_enrolls_csv_clips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    source = tmp_path / "imu.csv"
    np.savetxt(source, make_motion(1, 400, 50, rng), delimiter=",")
    runtime, pub = runtime_for(MOTION, source, tmp_path)
    clips = [
        {"name": "wave1.csv", "csv_base64": csv_b64(make_motion(2, 300, 50, rng))},
        {"name": "wave2.csv", "csv_base64": csv_b64(make_motion(2, 300, 50, rng), header=None)},
    ]
    done = pub.command("enroll", {"label": "wave", "clips": clips})
    assert done["ok"], done
    assert done["result"]["recordings"] == 2 and done["result"]["consistency"] > 0.9
    assert [c["active"] for c in done["result"]["clips"]] == [6, 6]  # sensor gate off by default
    assert runtime.gallery.counts() == {"wave": 2}
    one = pub.command("enroll", {"label": "tap", "csv_base64": clips[0]["csv_base64"]})
    assert one["ok"] and one["result"]["recordings"] == 1
    assert pub.command("list", {})["result"]["modality"] == "sensor"

    wrong = pub.command("enroll", {"label": "x", "wav_base64": wav_b64(voice(1.0, seed=1))})
    assert wrong["ok"] is False
    assert "this bundle is for sensor: send csv_base64 recordings, not wav_base64" in wrong["error"]
    short_rows = base64.b64encode(b"1,2,3\n4,5,6\n").decode()
    bad = pub.command(
        "enroll", {"label": "x", "clips": [{"name": "w.csv", "csv_base64": short_rows}]}
    )
    assert bad["ok"] is False and bad["error"].startswith("w.csv: has 3 channels")

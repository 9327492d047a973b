"""The review loop on the device: events and near misses carry their window's embedding; ``reject``
raises the label's threshold above a false match, ``confirm`` enrols a near miss, and both can be
undone (the real runtime, the shipped events bundle, real files beside the gallery)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from edgesiam.core.codec import decode_embedding
from edgesiam.runtime.calibration_store import calibration_path, cohort_path
from edgesiam.runtime.config import RuntimeConfig
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.publishers import MemoryPublisher
from tests.support.paths import EVENTS_BUNDLE
from tests.support.signals import make_voice

PITCHES = ((160, 0.9), (170, 0.5), (190, 0.9), (200, 0.5), (165, 0.7), (195, 0.7))


@pytest.fixture
def gallery(events_gallery: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "device" / "gallery.npz"
    copy.parent.mkdir()
    copy.write_bytes(events_gallery.read_bytes())
    return copy


@pytest.fixture
def room(tmp_path: Path) -> Path:
    """Other people talking: voices near the enrolled one, some of them matched as it."""
    rng = np.random.default_rng(4)
    x = np.concatenate([make_voice(f, tilt, 4.0, 16000, rng) for f, tilt in PITCHES])
    path = tmp_path / "room.wav"
    sf.write(path, x, 16000, subtype="PCM_16")
    return path


LOOSE = 0.985
"""A hand-set threshold, loose enough for some of the room's voices to match (false matches to review)."""


def runtime(gallery: Path, stream: Path, state: Path, **extra: Any) -> Runtime:
    matching = {"threshold": LOOSE, **extra.pop("matching", {})}
    config = RuntimeConfig.model_validate(
        {
            "bundle": str(EVENTS_BUNDLE),
            "gallery": str(gallery),
            "state_dir": str(state),
            "device_id": "dev",
            "source": {"type": "file", "path": str(stream)},
            "mqtt": {"enabled": False},
            "matching": matching,
            **extra,
        }
    )
    return Runtime(config, publisher=lambda outbox: MemoryPublisher("dev", outbox))


def replay(rt: Runtime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rt.run()
    publisher = rt.publisher
    assert isinstance(publisher, MemoryPublisher)
    return publisher.events, publisher.on_topic("edgesiam/dev/near_miss")


def command(rt: Runtime, verb: str, payload: dict[str, Any]) -> dict[str, Any]:
    publisher = rt.publisher
    assert isinstance(publisher, MemoryPublisher)
    return publisher.command(verb, payload)


def test_events_and_near_misses_carry_their_window_embedding(
    gallery: Path, room: Path, tmp_path: Path
) -> None:
    events, near = replay(runtime(gallery, room, tmp_path / "s"))
    assert events and near
    for message in (events[0], near[0]):
        assert message["schema_revision"] == 2 and len(message["embedding_id"]) == 12
        e = decode_embedding(message["embedding"], message["embedding_scale"], 64)
        assert e.shape == (64,) and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    quiet, quiet_near = replay(runtime(gallery, room, tmp_path / "q", send_embeddings=False))
    assert quiet and "embedding" not in quiet[0] and "embedding" not in quiet_near[0]


def test_a_rejected_false_match_no_longer_matches_and_undo_restores_it(
    gallery: Path, room: Path, tmp_path: Path
) -> None:
    events, _ = replay(runtime(gallery, room, tmp_path / "s0"))
    wrong = max(events, key=lambda e: e["score"])  # the strongest false match of the room
    rt = runtime(gallery, room, tmp_path / "s1")
    result = command(
        rt,
        "reject",
        {
            "label": "voice",
            "embedding": wrong["embedding"],
            "embedding_scale": wrong["embedding_scale"],
        },
    )
    assert result["ok"], result
    found = result["result"]
    assert found["threshold"] > wrong["score"] > found["threshold_before"]
    assert found["rejected"] == 1 and found["source"].startswith("edgesiam calibrate")
    assert calibration_path(gallery).exists() and cohort_path(gallery).exists()
    after, _ = replay(rt)
    assert all(abs(e["offset_s"] - wrong["offset_s"]) > 1.0 for e in after)
    assert len(after) < len(events)

    again = runtime(gallery, room, tmp_path / "s2")  # a restart keeps the rejection
    assert again.thresholds.for_label("voice") == pytest.approx(found["threshold"], abs=1e-5)
    undone = command(again, "unreject", {"id": found["id"]})
    assert undone["ok"], undone
    assert undone["result"]["threshold"] == pytest.approx(wrong["threshold"], abs=1e-5)
    restored, _ = replay(again)
    assert len(restored) == len(events)


def test_a_confirmed_near_miss_matches_on_replay_and_can_be_forgotten(
    gallery: Path, room: Path, tmp_path: Path
) -> None:
    each = {"matching": {"decision": {"n_of": 1, "m": 1, "refractory_s": 0.0}}}
    events, near = replay(runtime(gallery, room, tmp_path / "s1", **each))
    missed = max(near, key=lambda n: n["score"])
    assert all(abs(e["offset_s"] - missed["offset_s"]) > 0.01 for e in events)
    rt = runtime(gallery, room, tmp_path / "s2", **each)
    result = command(
        rt,
        "confirm",
        {
            "label": "voice",
            "embedding": missed["embedding"],
            "embedding_scale": missed["embedding_scale"],
        },
    )
    assert result["ok"], result
    assert result["result"]["recordings"] == 2
    after, _ = replay(rt)
    assert any(abs(e["offset_s"] - missed["offset_s"]) <= 0.5 for e in after)

    rt = runtime(gallery, room, tmp_path / "s3")
    listed = command(rt, "list", {})["result"]["labels"][0]
    assert result["result"]["id"] in listed["templates"]
    undone = command(rt, "forget_template", {"label": "voice", "id": result["result"]["id"]})
    assert undone["ok"] and undone["result"]["recordings"] == 1


@pytest.mark.parametrize(
    ("verb", "payload", "code", "text"),
    [
        (
            "reject",
            {"label": "voice", "embedding": "!!!!", "embedding_scale": 0.01},
            "failed",
            "base64",
        ),
        (
            "reject",
            {"label": "voice", "embedding": "AAAA", "embedding_scale": 0.01},
            "failed",
            "64",
        ),
        (
            "reject",
            {"label": "voice", "embedding": "AAAA", "embedding_scale": -1},
            "invalid",
            "greater",
        ),
        ("unreject", {"id": "0123456789ab"}, "failed", "no rejected window"),
        ("unreject", {"id": "../etc"}, "invalid", "pattern"),
        ("forget_template", {"label": "voice", "id": "0123456789ab"}, "failed", "no template"),
    ],
)
def test_bad_review_commands_are_answered_with_the_reason(
    gallery: Path,
    room: Path,
    tmp_path: Path,
    verb: str,
    payload: dict[str, Any],
    code: str,
    text: str,
) -> None:
    rt = runtime(gallery, room, tmp_path / "s")
    try:
        result = command(rt, verb, payload)
    finally:
        rt.outbox.close()
    assert not result["ok"] and result["error_code"] == code and text in result["error"]


def test_a_rejection_on_a_centred_calibration_raises_the_label_above_the_centred_score(
    gallery: Path, room: Path, tmp_path: Path
) -> None:
    from edgesiam.runtime.calibrate import run_calibration

    rng = np.random.default_rng(9)
    background = tmp_path / "background" / "monday.wav"
    background.parent.mkdir()
    x = np.concatenate([make_voice(f, tilt, 4.0, 16000, rng) for f, tilt in PITCHES])
    sf.write(background, x, 16000, subtype="PCM_16")
    centred = {"matching": {"centre": "background", "threshold": None}}
    rt = runtime(gallery, room, tmp_path / "s0", **centred)
    loose = run_calibration(rt.config, str(background.parent), 10.0, 5000.0)  # a loose target
    assert loose.score == "centred-cosine"
    events, _ = replay(runtime(gallery, room, tmp_path / "s1", **centred))
    assert events, "the loose calibration lets some of the room through"
    wrong = max(events, key=lambda e: e["score"])
    rt = runtime(gallery, room, tmp_path / "s2", **centred)
    result = command(
        rt,
        "reject",
        {"label": "voice", "embedding": wrong["embedding"], "embedding_scale": wrong["embedding_scale"]},
    )  # fmt: skip
    assert result["ok"], result
    found = result["result"]
    # the event's score was centred; the new threshold is above it, from the stored background
    assert found["threshold"] > wrong["score"] >= found["threshold_before"]
    assert found["threshold_before"] == pytest.approx(loose.labels["voice"].threshold, abs=1e-5)
    after, _ = replay(rt)
    assert all(abs(e["offset_s"] - wrong["offset_s"]) > 1.0 for e in after)

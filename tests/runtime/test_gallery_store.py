"""The gallery file: atomic writes, binding to the model, damaged files, labels, enrolment."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesiam.core.frontend import SensorFrontEnd
from edgesiam.core.gate import EnergyGate
from edgesiam.errors import ConfigError, DataError
from edgesiam.runtime import gallery_store
from edgesiam.runtime.enrollment import enroll_recordings
from edgesiam.runtime.gallery_store import MAX_RECORDINGS, GalleryStore, consistency, validate_label

SHA = "a" * 64
OTHER = "b" * 64
D = 8


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def vectors(n: int, seed: int = 0, dim: int = D) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [v for v in rng.standard_normal((n, dim)).astype(np.float32)]


@pytest.fixture
def store(tmp_path: Path) -> GalleryStore:
    s = GalleryStore(tmp_path / "g" / "gallery.npz", SHA, bundle_name="demo")
    s.enroll("alice", vectors(3, 1), sources=["a1.wav", "a2.wav", "a3.wav"])
    s.enroll("bob", vectors(2, 2))
    return s


def test_round_trip_header_and_scores(store: GalleryStore) -> None:
    info = store.info()
    assert (info.bundle_sha256, info.bundle_name, info.embedding_dim) == (SHA, "demo", D)
    assert [(x.label, x.recordings) for x in info.labels] == [("alice", 3), ("bob", 2)]
    assert info.labels[0].sources == ["a1.wav", "a2.wav", "a3.wav"]
    assert info.created and info.updated >= info.created
    gallery = store.load()
    assert gallery.labels == ["alice", "bob"] and gallery.counts() == {"alice": 3, "bob": 2}
    templates = np.stack(vectors(3, 1))
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    np.testing.assert_allclose(gallery.templates("alice"), templates, atol=1e-6)
    with np.load(store.path, allow_pickle=False) as data:  # the documented layout
        assert data["embeddings"].dtype == np.float32 and data["labels"].tolist()[:1] == ["alice"]
        assert json.loads(str(data["header"]))["format"] == "edgesiam-gallery"
    assert not list(store.path.parent.glob(".*.tmp"))


def test_enroll_replaces_or_appends_and_forget(store: GalleryStore) -> None:
    again = store.enroll("alice", vectors(2, 5))
    assert again.replaced and again.recordings == 2 and store.load().counts()["alice"] == 2
    more = store.enroll("alice", vectors(1, 6), append=True)
    assert not more.replaced and more.recordings == 3
    with pytest.raises(ConfigError, match="above the limit of 10"):
        store.enroll("alice", vectors(8, 7), append=True)
    with pytest.raises(ConfigError, match="1 to 10"):
        store.enroll("carol", vectors(MAX_RECORDINGS + 1))
    with pytest.raises(ConfigError, match="1 to 10"):
        store.enroll("carol", [])
    assert store.forget("bob") == 2
    with pytest.raises(DataError, match=r"no label 'bob'.*enrolled: alice"):
        store.forget("bob")
    assert [x.label for x in store.list()] == ["alice"]
    store.forget("alice")
    assert store.list() == [] and len(store.load()) == 0


def test_window_embeddings_are_pooled_and_consistency_is_mean_pairwise_cosine(
    tmp_path: Path,
) -> None:
    s = GalleryStore(tmp_path / "g.npz", SHA)
    one = s.enroll("solo", [np.ones(D)])
    assert one.consistency == 1.0 and one.consistency_text == "n/a"
    windows = np.stack(vectors(4, 3))
    r = s.enroll("pooled", [windows, np.ones(D)])
    unit = windows / np.linalg.norm(windows, axis=1, keepdims=True)
    pooled = unit.mean(axis=0) / np.linalg.norm(unit.mean(axis=0))
    np.testing.assert_allclose(s.load().templates("pooled")[0], pooled, atol=1e-6)
    assert r.consistency == pytest.approx(float(pooled @ (np.ones(D) / np.sqrt(D))), abs=1e-6)
    assert consistency(np.array([[1.0, 0], [0, 1.0], [1.0, 1.0]])) == pytest.approx(
        (0 + 2 * np.sqrt(0.5)) / 3
    )
    assert r.closest is not None and r.closest[0] == "solo"
    with pytest.raises(DataError, match="non-zero"):
        s.enroll("zero", [np.zeros(D)])
    with pytest.raises(DataError, match="size 4 cannot join a gallery of size 8"):
        s.enroll("small", [np.ones(4)])


def test_a_gallery_of_another_model_is_refused(store: GalleryStore) -> None:
    other = GalleryStore(store.path, OTHER)
    for action in (
        other.load,
        other.list,
        lambda: other.enroll("carol", vectors(1)),
        lambda: other.forget("alice"),
    ):
        with pytest.raises(DataError) as err:
            action()
        message = str(err.value)
        assert SHA[:12] in message and OTHER[:12] in message and "demo" in message
        assert "Re-enroll" in message
    assert [x.label for x in GalleryStore(store.path).list()] == ["alice", "bob"]  # unbound: ok
    with pytest.raises(ConfigError, match="sha256"):
        GalleryStore(store.path).load()
    with pytest.raises(ConfigError, match="sha256"):
        GalleryStore(store.path).enroll("x", vectors(1))


def test_a_crash_mid_write_leaves_the_old_gallery(
    store: GalleryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = store.path.read_bytes()

    def power_cut(src: object, dst: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(gallery_store.os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        store.enroll("carol", vectors(2, 9))
    with pytest.raises(OSError, match="power cut"):
        store.forget("alice")
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert [x.label for x in store.list()] == ["alice", "bob"]
    assert sorted(p.name for p in store.path.parent.iterdir()) == [
        "gallery.npz",
        "gallery.npz.lock",
    ]


def test_writes_fsync_the_file_and_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(gallery_store.os, "fsync", spy)
    GalleryStore(tmp_path / "g.npz", SHA).enroll("a", vectors(1))
    assert synced == ["file", "dir"]


def test_permissions_new_file_0644_existing_kept(tmp_path: Path) -> None:
    s = GalleryStore(tmp_path / "g.npz", SHA)
    s.enroll("a", vectors(1))
    assert stat.S_IMODE(s.path.stat().st_mode) == 0o644
    os.chmod(s.path, 0o600)
    s.enroll("b", vectors(1))
    assert stat.S_IMODE(s.path.stat().st_mode) == 0o600


def _npy(path: Path) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.ones(3))


def _npz(path: Path, **arrays: Any) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _header(**changes: object) -> np.ndarray:
    header = {
        "format": "edgesiam-gallery",
        "version": 1,
        "bundle_sha256": SHA,
        "embedding_dim": 2,
        "labels": {"a": {"recordings": 1, "consistency": 1.0}},
    }
    header.update(changes)
    return np.array(json.dumps(header))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: p.write_bytes(b"\x00garbage" * 10), "not a readable edgesiam gallery"),
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "not a readable edgesiam gallery"),
        (lambda p: p.write_bytes(b""), "not a readable edgesiam gallery"),
        (_npy, "single array"),
        (lambda p: _npz(p, embeddings=np.ones((1, 2), np.float32)), "missing header, labels"),
        (
            lambda p: _npz(
                p, header=np.array("{"), embeddings=np.ones((1, 2), np.float32), labels=["a"]
            ),
            "not JSON",
        ),
        (
            lambda p: _npz(
                p, header=_header(), embeddings=np.ones((1, 3), np.float32), labels=["a"]
            ),
            "do not fit embedding_dim 2",
        ),
        (
            lambda p: _npz(
                p, header=_header(), embeddings=np.ones((2, 2), np.float32), labels=["a", "b"]
            ),
            "label table does not match",
        ),
        (
            lambda p: _npz(
                p,
                header=_header(),
                embeddings=np.full((1, 2), np.nan, np.float32),
                labels=["a"],
            ),
            "NaN",
        ),
        (
            lambda p: _npz(
                p, header=_header(version=2), embeddings=np.ones((1, 2), np.float32), labels=["a"]
            ),
            "upgrade edgesiam",
        ),
        (
            lambda p: _npz(p, header=np.array("[]"), embeddings=np.ones((1, 2)), labels=["a"]),
            "does not say it is an edgesiam gallery",
        ),
    ],
)
def test_a_damaged_file_is_refused_and_never_overwritten(
    store: GalleryStore, damage: Any, match: str
) -> None:
    damage(store.path)
    damaged = store.path.read_bytes()
    for action in (store.load, store.list, lambda: store.forget("alice")):
        with pytest.raises(DataError, match=match) as err:
            action()
        assert str(store.path) in str(err.value)
    with pytest.raises(DataError, match=match):
        store.enroll("alice", vectors(1))
    assert store.path.read_bytes() == damaged


def test_missing_gallery_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="edgesiam enroll"):
        GalleryStore(tmp_path / "none.npz", SHA).load()
    with pytest.raises(DataError, match="not a file"):
        GalleryStore(tmp_path, SHA).load()


@pytest.mark.parametrize(
    ("label", "match"),
    [
        ("", "empty"),
        ("x" * 65, "limit is 64"),
        ("a/b", "path separators"),
        ("a\\b", "path separators"),
        ("room+1", "wildcards"),
        ("#1", "wildcards"),
        ("bad\nname", "control"),
        ("nul\x00", "control"),
        ("zero\u200bwidth", "invisible"),
        (" alice", "space"),
        ("..", "not allowed"),
        (7, "text"),
    ],
)
def test_bad_labels_are_refused(tmp_path: Path, label: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate_label(label)
    with pytest.raises(ConfigError, match=match):
        GalleryStore(tmp_path / "g.npz", SHA).enroll(label, vectors(1))
    assert not (tmp_path / "g.npz").exists()


def test_good_labels() -> None:
    for label in ("alice", "Alice Smith", "dog-bark_2", "x" * 64, "café", "声音", "a.b@c=d"):
        assert validate_label(label) == label


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    counts=st.lists(st.integers(1, 4), min_size=1, max_size=6),
    dim=st.integers(1, 6),
    seed=st.integers(0, 1000),
    aggregate=st.sampled_from(["max", "mean"]),
)
def test_saved_galleries_score_like_a_naive_loop(
    tmp_path: Path, counts: list[int], dim: int, seed: int, aggregate: str
) -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path / f"h{seed}_{dim}_{len(counts)}_{aggregate}.npz"
    path.unlink(missing_ok=True)
    templates = {f"label{i}": rng.standard_normal((k, dim)) + 0.05 for i, k in enumerate(counts)}
    writer = GalleryStore(path, SHA)
    for label, t in reversed(list(templates.items())):
        writer.enroll(label, list(t))
    gallery = GalleryStore(path, SHA, aggregate=aggregate).load()  # type: ignore[arg-type]
    queries = rng.standard_normal((3, dim))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    expected = np.zeros((3, len(templates)))
    for j, label in enumerate(sorted(templates)):
        t = unit_rows(templates[label])
        for b in range(3):
            if aggregate == "max":
                expected[b, j] = max(float(queries[b] @ row) for row in t)
            else:
                mean = t.mean(axis=0)
                norm = np.linalg.norm(mean)
                expected[b, j] = float(queries[b] @ mean) / norm if norm > 1e-6 else 0.0
    got = gallery.scores(queries)
    if aggregate == "mean":  # a label whose templates cancel out has no direction: leave it out
        keep = [
            j
            for j, label in enumerate(sorted(templates))
            if np.linalg.norm(unit_rows(templates[label]).mean(axis=0)) > 0.1
        ]
        got, expected = got[:, keep], expected[:, keep]
    np.testing.assert_allclose(got, expected, atol=1e-5)


# --- enroll_recordings with a stand-in model (the real bundle is in test_gallery_cli) ----------


class SpectrumEmbedder:
    """A stand-in DeviceEmbedder: the window's coarse magnitude spectrum as its embedding."""

    modality = "audio"
    sample_rate = 8000
    window = 4000
    hop = 2000
    channels = 1

    def __init__(self) -> None:
        self.frontend = lambda w: np.asarray(w, dtype=np.float32)[:, None, :]

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        spectrum = np.abs(np.fft.rfft(features[:, 0, :], axis=1))[:, 1:401]
        e = spectrum.reshape(len(features), D, -1).sum(axis=2) + 1e-6
        return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def write_tone(
    path: Path, freq: float, seconds: float, amp: float = 0.3, rate: int = 16000
) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def test_enroll_recordings_reports_windows_and_refuses_silent_clips(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "g.npz", SHA)
    files = [
        write_tone(tmp_path / "a.wav", 300, 1.0),
        write_tone(tmp_path / "b.wav", 310, 1.2),
        write_tone(tmp_path / "short.wav", 305, 0.2),
        write_tone(tmp_path / "silent.wav", 300, 1.0, amp=1e-4),
    ]
    quiet_tail = np.concatenate([0.3 * np.sin(np.arange(4000) / 5), np.zeros(20000)])
    sf.write(tmp_path / "tail.wav", quiet_tail.astype(np.float32), 8000)
    files.append(tmp_path / "tail.wav")
    result = enroll_recordings(store, SpectrumEmbedder(), "tone", files)
    assert result.recordings == 4 and 0 < result.consistency <= 1
    assert [c.text for c in result.clips] == [
        "a.wav: 3 of 3 windows active",
        "b.wav: 3 of 3 windows active",
        "short.wav: 1 of 1 windows active",
        "silent.wav: refused: no active window: all 3 of its windows are below the energy "
        "gate's -45 dBFS (the loudest is -82.5 dBFS); record closer or louder, or lower the gate "
        "(enroll --gate-db, matching.gate.threshold_db)",
        "tail.wav: 2 of 11 windows active",  # the gate's hangover is for streams, not templates
    ]
    text = "\n".join(result.warnings)
    assert len(result.warnings) == 3, text
    assert "short.wav: shorter than one window (0.20 s < 0.50 s)" in text
    assert result.clips[3].text in result.warnings
    assert "tail.wav: only 2 of its 11 windows pass the energy gate (-45 dBFS)" in text
    assert store.list()[0].sources == ["a.wav", "b.wav", "short.wav", "tail.wav"]


def test_templates_are_made_from_the_active_windows_only(tmp_path: Path) -> None:
    """Silence after a sound does not dilute its template (it did: the mean took every window)."""
    from edgesiam.model.embedders import embed_recording

    model = SpectrumEmbedder()
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
    padded = np.concatenate([tone, np.zeros(8 * 8000, np.float32)])
    sf.write(tmp_path / "tone.wav", tone, 8000, subtype="FLOAT")
    sf.write(tmp_path / "padded.wav", padded, 8000, subtype="FLOAT")
    store = GalleryStore(tmp_path / "g.npz", SHA)
    enroll_recordings(store, model, "clean", [tmp_path / "tone.wav"])
    result = enroll_recordings(store, model, "padded", [tmp_path / "padded.wav"])
    assert result.clips[0].text == "padded.wav: 4 of 35 windows active"
    gallery = store.load()
    clean, padded_template = gallery.templates("clean")[0], gallery.templates("padded")[0]
    assert float(clean @ padded_template) > 0.999
    every_window = embed_recording(model, padded)  # what a template of all windows would be
    assert float(clean @ every_window) < 0.95


def test_a_clip_with_no_active_window_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "g.npz", SHA)
    sf.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(DataError, match=r"silence\.wav: refused: no active window: all 3 of") as e:
        enroll_recordings(store, SpectrumEmbedder(), "hammer", [tmp_path / "silence.wav"])
    assert "loudest is -200.0 dBFS" in str(e.value)
    write_tone(tmp_path / "hum.wav", 300, 1.0, amp=1e-3)
    with pytest.raises(DataError, match=r"'hammer' was not enrolled: every clip was refused: "):
        enroll_recordings(
            store, SpectrumEmbedder(), "hammer", [tmp_path / "silence.wav", tmp_path / "hum.wav"]
        )
    assert not store.exists()


def test_enroll_recordings_refuses_bad_input(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "g.npz", SHA)
    a = write_tone(tmp_path / "a.wav", 300, 1.0)
    model = SpectrumEmbedder()
    with pytest.raises(ConfigError, match="given twice"):
        enroll_recordings(store, model, "x", [a, tmp_path / "." / "a.wav"])
    with pytest.raises(ConfigError, match="1 to 10"):
        enroll_recordings(store, model, "x", [a] * 11)
    with pytest.raises(ConfigError, match="path separators"):
        enroll_recordings(store, model, "x/y", [a])
    np.save(tmp_path / "s.npy", np.ones((10, 3)))
    with pytest.raises(DataError, match="is a sensor file, but the bundle is for audio"):
        enroll_recordings(store, model, "x", [tmp_path / "s.npy"])
    with pytest.raises(DataError, match="does not exist"):
        enroll_recordings(store, model, "x", [tmp_path / "nope.wav"])
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="not a recording"):
        enroll_recordings(store, model, "x", [tmp_path / "notes.txt"])
    assert not store.exists()


def test_enroll_sensor_recordings_warns_about_no_motion(tmp_path: Path) -> None:
    class MotionEmbedder:
        modality = "sensor"
        sample_rate = 50
        window = 100
        hop = 50
        channels = 3
        frontend = SensorFrontEnd(3)

        def embed_features(self, features: np.ndarray) -> np.ndarray:
            e = np.concatenate([features.mean(axis=2), features.std(axis=2)], axis=1) + 1e-3
            e = np.pad(e, ((0, 0), (0, D - e.shape[1])), constant_values=0.1)
            return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)

    t = np.arange(300) / 50
    moving = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t), 1 + 0 * t], axis=1)
    np.save(tmp_path / "moving.npy", moving.astype(np.float32))
    np.savetxt(tmp_path / "still.csv", np.tile([0.0, 0.0, 1.0], (300, 1)), delimiter=",")
    store = GalleryStore(tmp_path / "g.npz", SHA)
    result = enroll_recordings(
        store, MotionEmbedder(), "wave", [tmp_path / "moving.npy", tmp_path / "still.csv"]
    )
    assert [w.split(":")[0] for w in result.warnings] == ["still.csv"]
    assert "almost no motion" in result.warnings[0]
    # the runtime's gate is off for sensors by default: every window makes the template
    assert [c.text for c in result.clips] == [
        "moving.npy: 5 of 5 windows active",
        "still.csv: 5 of 5 windows active",
    ]
    # a device whose config turns the sensor gate on enrolls as it matches: moving windows only
    gate = EnergyGate.for_modality("sensor", enabled=True)
    files = [tmp_path / "moving.npy", tmp_path / "still.csv"]
    result = enroll_recordings(store, MotionEmbedder(), "wave", files, gate=gate)
    assert result.recordings == 1 and result.clips[0].active == 5
    assert result.clips[1].text.startswith(
        "still.csv: refused: no active window: none of its 5 windows moves more than the gate's 0.02"
    )

"""NaN, ±Inf and out-of-range samples through the real pipeline: energy gate, front-end, int8
TFLite model (the shipped ``export/events`` and ``export/motion`` bundles), matching, decision.

Property: a glitch in the stream never turns into a NaN score, a NaN event or a stopped run. The
runs use a rule under which every window that reaches the model is an event (explicit threshold
-1, 1 of 1 windows, no refractory period), so "as many events as windows, every score finite"
says that each window was scored with a real number: a NaN score can never pass ``>= -1``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from edgesiam.model.embedders import embed_recording
from edgesiam.model.interpreters import BundleEmbedder, load_model
from edgesiam.runtime.config import load_runtime_config
from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
from edgesiam.runtime.pipeline import Runtime
from edgesiam.runtime.publishers import MemoryPublisher
from tests.support.fuzz_scale import TIMEOUT_S, fuzz_settings
from tests.support.signals import make_motion, make_voice

pytestmark = pytest.mark.timeout(TIMEOUT_S)

ROOT = Path(__file__).resolve().parents[2]
GLITCHES = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}


@pytest.fixture(scope="module")
def events() -> BundleEmbedder:
    return load_model(ROOT / "export" / "events")


@pytest.fixture(scope="module")
def motion() -> BundleEmbedder:
    return load_model(ROOT / "export" / "motion")


def clean_signal(embedder: Any, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rate = int(embedder.sample_rate)
    if embedder.modality == "audio":
        return make_voice(180.0, 0.8, seconds, rate, rng)
    return make_motion(seed % 5, int(seconds * rate), rate, rng)


def gallery_for(embedder: Any, folder: Path) -> Path:
    path = folder / f"{embedder.manifest.name}-gallery.npz"
    if not path.exists():
        store = GalleryStore(path, model_sha256(embedder.manifest))
        store.enroll("steady", [embed_recording(embedder, clean_signal(embedder, 3.0, 1))])
    return path


@st.composite
def glitched(draw: st.DrawFn, n: int, channels: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Bursts (start, length, kind) of NaN/±Inf or of huge finite values, on some channels."""
    bursts = draw(
        st.lists(
            st.tuples(
                st.integers(0, n - 1),
                st.integers(1, max(1, n // 4)),
                st.sampled_from([*GLITCHES, "huge"]),
                st.integers(0, channels - 1),
            ),
            min_size=1,
            max_size=6,
        )
    )
    mask = np.zeros(n, dtype=bool)
    values = np.zeros((n, channels), dtype=np.float32)
    spans = []
    for start, length, kind, channel in bursts:
        end = min(n, start + length)
        values[start:end, channel] = 1e30 if kind == "huge" else GLITCHES[kind]
        mask[start:end] = True
        spans.append((start, end))
    return values, spans


def apply(signal: np.ndarray, glitch: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    out = signal.copy()
    if out.ndim == 1:
        out = out[:, None]
    for start, end in spans:
        hit = glitch[start:end] != 0
        out[start:end][hit] = glitch[start:end][hit]
    return out[:, 0] if signal.ndim == 1 else out


@fuzz_settings(40)
@given(data=st.data())
def test_windows_with_glitches_embed_and_score_finite(
    events: BundleEmbedder, motion: BundleEmbedder, tmp_path: Path, data: st.DataObject
) -> None:
    embedder = data.draw(st.sampled_from([events, motion]), label="bundle")
    window = clean_signal(embedder, embedder.window / embedder.sample_rate, 3)
    channels = 1 if window.ndim == 1 else window.shape[1]
    glitch, spans = data.draw(glitched(window.shape[0], channels), label="glitches")
    x = apply(window, glitch, spans)
    features = embedder.frontend(x[None])
    embedding = embedder.embed_features(features)
    assert np.all(np.isfinite(embedding))
    store = GalleryStore(gallery_for(embedder, tmp_path), model_sha256(embedder.manifest))
    scores = store.load().scores(embedding)
    assert scores.shape == (1, 1) and np.all(np.isfinite(scores))
    if not np.any(glitch == np.float32(1e30)):
        assert np.all(np.isfinite(features))  # NaN/Inf are replaced by the front-end


def run(embedder: Any, stream: Path, folder: Path, gate: bool) -> tuple[Runtime, MemoryPublisher]:
    config = load_runtime_config(
        None,
        {
            "bundle": str(embedder.path),
            "gallery": str(gallery_for(embedder, folder)),
            "source": {"type": "file", "path": str(stream)},
            "state_dir": str(folder / "state"),
            "device_id": "glitch",
            "mqtt": {"enabled": False},
            "matching": {
                "threshold": -1.0,
                "decision": {"n_of": 1, "m": 1, "refractory_s": 0.0},
                "gate": {"enabled": gate},
            },
        },
    )
    runtime = Runtime(
        config, embedder=embedder, publisher=lambda outbox: MemoryPublisher("glitch", outbox)
    )
    summary = runtime.run()
    assert summary.reason == "end", summary
    assert isinstance(runtime.publisher, MemoryPublisher)
    return runtime, runtime.publisher


@fuzz_settings(20)
@given(data=st.data())
def test_a_glitched_stream_gives_finite_events_for_every_window(
    events: BundleEmbedder, motion: BundleEmbedder, tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:  # fmt: skip
    embedder = data.draw(st.sampled_from([events, motion]), label="bundle")
    gate = embedder.modality == "audio" and data.draw(st.booleans(), label="gate")
    folder = tmp_path_factory.mktemp("glitch")
    signal = clean_signal(embedder, 4.0, 2)
    channels = 1 if signal.ndim == 1 else signal.shape[1]
    glitch, spans = data.draw(glitched(signal.shape[0], channels), label="glitches")
    x = apply(signal, glitch, spans)
    if embedder.modality == "audio":
        stream = folder / "glitch.wav"
        sf.write(stream, x, int(embedder.sample_rate), subtype="FLOAT")
    else:
        stream = folder / "glitch.npy"
        np.save(stream, x)
    runtime, pub = run(embedder, stream, folder, gate)
    windows = 1 + (signal.shape[0] - embedder.window) // embedder.hop
    assert runtime.metrics.windows == windows
    scored = windows - runtime.metrics.gated
    assert len(pub.events) == scored, (len(pub.events), scored)
    for event in pub.events:
        assert np.isfinite(event["score"]) and event["score"] >= -1.0
    for message in pub.messages:  # events, near misses, metrics: strict JSON, no NaN/Infinity
        if message.payload.startswith("{"):
            json.loads(message.payload, parse_constant=refuse)


def refuse(constant: str) -> None:
    raise AssertionError(f"{constant} in a published payload")

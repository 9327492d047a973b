"""The streaming matcher alone: samples in, decisions out, the same for any chunking, with the
gate, the open-set margin and a restart after lost samples; once with a real int8 bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesiam.core.decision import Decider, DecisionRule
from edgesiam.core.frontend import FrontEnd, LogMelFrontEnd, LogMelParams
from edgesiam.core.gate import EnergyGate
from edgesiam.core.matching import Gallery, Thresholds
from edgesiam.core.stream import StreamMatcher
from edgesiam.model.embedders import embed_recording
from edgesiam.model.interpreters import load_model

RATE = 16000


class _Energy:
    """A stand-in model: each window's mean log-mel value per band, L2-normalised."""

    modality = "audio"
    sample_rate = RATE
    window = 16000
    hop = 8000
    channels = 1
    frontend: FrontEnd = LogMelFrontEnd(LogMelParams(n_mels=8))

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        out: np.ndarray = features.mean(axis=2) + 20.0
        unit: np.ndarray = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit


def _tone(seconds: float, hz: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _matcher(
    gallery: Gallery,
    threshold: float = 0.99,
    *,
    gate: EnergyGate | None = None,
    decider: Decider | None = None,
    margin: float = 0.0,
) -> StreamMatcher:
    thresholds = Thresholds(threshold)
    return StreamMatcher(_Energy(), gallery, thresholds, gate=gate, decider=decider, margin=margin)


def _gallery() -> Gallery:
    model = _Energy()
    low, high = embed_recording(model, _tone(2, 300)), embed_recording(model, _tone(2, 3000))
    return Gallery.from_templates(np.stack([low, high]), ["low", "high"])


def test_a_tone_gives_events_of_its_label_at_window_ends() -> None:
    decisions = _matcher(_gallery()).push(_tone(3, 3000))
    assert [d.label for d in decisions] == ["high"] * 5
    assert [d.offset_s for d in decisions] == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert all(d.kind == "event" and d.score >= 0.99 for d in decisions)


def test_the_chunking_does_not_change_the_decisions() -> None:
    x = np.concatenate([_tone(2, 300), _tone(2, 3000)])
    whole = _matcher(_gallery()).push(x)
    pieces = _matcher(_gallery())
    chunked = [d for chunk in np.array_split(x, 37) for d in pieces.push(chunk)]
    assert chunked == whole
    assert {d.label for d in whole} == {"low", "high"}


def test_silent_windows_are_gated_and_decide_nothing() -> None:
    matcher = _matcher(_gallery(), gate=EnergyGate())
    seen: list[np.ndarray | None] = []
    matcher.on_window = lambda offset_s, embedding: seen.append(embedding)
    results = matcher.push_windows(np.zeros(3 * RATE, dtype=np.float32))
    assert [r.embedding for r in results] == [None] * 5 == seen
    assert all(not r.decisions and r.features_ms == r.inference_ms == 0.0 for r in results)


def test_a_margin_leaves_an_ambiguous_window_unlabelled() -> None:
    same = embed_recording(_Energy(), _tone(2, 3000))
    twins = Gallery.from_templates(np.stack([same, same]), ["a", "b"])
    assert _matcher(twins, threshold=0.5).push(_tone(2, 3000))
    assert _matcher(twins, threshold=0.5, margin=0.01).push(_tone(2, 3000)) == []


def test_restart_counts_offsets_from_the_new_start_and_drops_the_half_window() -> None:
    matcher = _matcher(_gallery())
    matcher.push(_tone(0.75, 3000))  # half a window, then samples are lost
    matcher.restart(10 * RATE)
    decisions = matcher.push(_tone(1, 3000))
    assert [d.offset_s for d in decisions] == [11.0]


def test_the_rule_and_the_event_embedding_come_through() -> None:
    matcher = _matcher(_gallery(), decider=Decider(DecisionRule(n_of=2, m=2)))
    decisions = matcher.push(_tone(2, 3000))
    assert [d.offset_s for d in decisions] == [1.5]
    found = matcher.embedding_of(decisions[0])
    assert found is not None and np.isclose(
        float(found.ravel() @ _gallery().templates("high")[0]), 1.0
    )


def test_a_real_bundle_matches_its_own_enrolment(audio_bundle: Path) -> None:
    model = load_model(audio_bundle)
    rng = np.random.default_rng(3)
    x = (0.3 * rng.standard_normal(4 * model.sample_rate)).astype(np.float32)
    gallery = Gallery.from_templates(embed_recording(model, x)[None, :], ["noise"])
    decisions = StreamMatcher(model, gallery, Thresholds(-1.0)).push(x)
    assert decisions and {d.label for d in decisions} == {"noise"}
    offsets = [d.offset_s for d in decisions]
    assert offsets == sorted(offsets) and offsets[-1] <= 4.0

"""The demo's truth and score: which speaker really talked when, and each event judged against it
(hit, false match) with the misses counted per enrolled turn.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["DemoReport", "ScoredEvent", "Segment", "score_events", "window_overlaps"]


@dataclass(frozen=True)
class Segment:
    """One turn of the stream: a speaker talking from ``start_s`` to ``end_s``."""

    label: str
    start_s: float
    end_s: float
    enrolled: bool
    clips: tuple[str, ...] = ()

    def overlap(self, a: float, b: float) -> float:
        return max(0.0, min(b, self.end_s) - max(a, self.start_s))


@dataclass
class ScoredEvent:
    """An event as the subscriber received it, and what was really happening then."""

    seq: int
    id: str
    label: str
    score: float
    threshold: float
    offset_s: float
    received: float
    speaking: list[str]
    verdict: str  # hit | never_enrolled | wrong_label | noise
    segment: int | None = None

    @property
    def hit(self) -> bool:
        return self.verdict == "hit"


@dataclass
class DemoReport:
    """What a demo run found (also written as WORKDIR/summary.json)."""

    bundle: str
    data: str
    enrolled: list[str]
    never_enrolled: list[str]
    target_fmr: float
    threshold: float
    stream_s: float
    turns: int
    enrolled_turns: int
    events_decided: int
    events_received: int
    hits: int
    false_matches: int
    false_never_enrolled: int
    false_wrong_label: int
    false_noise: int
    detected_turns: int
    missed_turns: int
    near_misses: int
    windows: int
    gated_windows: int
    wall_s: float
    windows_per_s: float
    real_time_factor: float
    inference_ms_p50: float | None
    inference_ms_p95: float | None
    broker: str
    workdir: str
    statuses: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    phase: str = "before calibration"
    thresholds: dict[str, float] | None = None
    """per-label thresholds in force (after calibration)"""
    before: dict[str, Any] | None = None
    """the same stream before calibration (this report's fields)"""
    calibration: dict[str, float] | None = None
    tradeoff: list[dict[str, Any]] = field(default_factory=list)
    """the same stream calibrated for other targets: max_false_per_hour, hits, false matches,
    turns detected"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_overlaps(segments: Sequence[Segment], a: float, b: float) -> list[tuple[int, float]]:
    """Indices of the segments overlapping ``[a, b]`` and by how much, the largest first."""
    found = [(i, s.overlap(a, b)) for i, s in enumerate(segments)]
    return sorted(((i, o) for i, o in found if o > 0), key=lambda x: -x[1])


def score_events(
    events: Sequence[dict[str, Any]],
    segments: Sequence[Segment],
    window_s: float,
    received: Sequence[float] | None = None,
) -> list[ScoredEvent]:
    """Judge each event against the true turns (see the module docstring)."""
    out = []
    for k, event in enumerate(events):
        end = float(event["offset_s"])
        overlaps = window_overlaps(segments, end - window_s, end)
        speaking = [segments[i].label for i, _ in overlaps]
        label = str(event["label"])
        matching = [i for i, _ in overlaps if segments[i].label == label and segments[i].enrolled]
        if matching:
            verdict, segment = "hit", matching[0]
        elif not overlaps:
            verdict, segment = "noise", None
        elif segments[overlaps[0][0]].enrolled:
            verdict, segment = "wrong_label", None
        else:
            verdict, segment = "never_enrolled", None
        out.append(
            ScoredEvent(
                seq=int(event["seq"]),
                id=str(event["id"]),
                label=label,
                score=float(event["score"]),
                threshold=float(event["threshold"]),
                offset_s=end,
                received=float(received[k]) if received is not None else math.nan,
                speaking=speaking,
                verdict=verdict,
                segment=segment,
            )
        )
    return out

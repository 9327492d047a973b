"""What happens to a stream's samples, and nothing else: windows → features → embed → match →
decide, in one place for the device runtime, the benchmark and the tests.

:class:`StreamMatcher` holds no thread, queue or clock of its own beyond timing each window; the
runtime (:mod:`edgesiam.runtime.pipeline`) feeds it chunks under its lock, counts, and publishes
what comes back. The model comes through :class:`~edgesiam.core.embedder.DeviceEmbedder`, so core
stays numpy-only.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edgesiam.core.decision import MAX_M, Decider, Decision
from edgesiam.core.embedder import DeviceEmbedder
from edgesiam.core.frontend import WindowFeatures
from edgesiam.core.gate import EnergyGate
from edgesiam.core.matching import Thresholds
from edgesiam.core.windowing import StreamWindower

__all__ = ["Scorer", "StreamMatcher", "WindowResult"]


class Scorer(Protocol):
    """A gallery's scores for query embeddings: raw cosines or normalised (AS-norm)."""

    @property
    def labels(self) -> Sequence[str]: ...

    def scores(self, queries: npt.ArrayLike) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True)
class WindowResult:
    """One window's outcome: its best label and score, its embedding (None: the gate found it
    silent) and the decisions it completed; times in milliseconds."""

    offset_s: float
    label: str | None
    score: float
    embedding: np.ndarray | None
    decisions: list[Decision]
    features_ms: float
    inference_ms: float
    total_ms: float


class StreamMatcher:
    """A stream's samples in, decisions out (windows → features → embed → match → decide).

    ``scorer``, ``thresholds``, ``decider``, ``gate`` and ``margin`` are plain attributes: the
    owner may replace them between two pushes (a new gallery, new thresholds, a reload).
    ``on_window`` is called with each window's end offset and embedding (None: gated).
    """

    def __init__(
        self,
        embedder: DeviceEmbedder,
        scorer: Scorer,
        thresholds: Thresholds,
        *,
        decider: Decider | None = None,
        gate: EnergyGate | None = None,
        margin: float = 0.0,
        sample_rate: float | None = None,
    ) -> None:
        self.embedder = embedder
        self.scorer, self.thresholds, self.margin = scorer, thresholds, margin
        self.decider = decider if decider is not None else Decider()
        self.gate = gate if gate is not None else EnergyGate(enabled=False)
        self.sample_rate = float(sample_rate if sample_rate is not None else embedder.sample_rate)
        channels = None if embedder.modality == "audio" else embedder.channels
        self.windower = StreamWindower(embedder.window, embedder.hop, channels)
        self.features = WindowFeatures(embedder.frontend, embedder.window, embedder.hop)
        self.on_window: Callable[[float, np.ndarray | None], None] | None = None
        self._base = 0
        self._recent: deque[tuple[str | None, float, np.ndarray]] = deque(maxlen=MAX_M)

    def restart(self, at_sample: int) -> None:
        """Samples were lost: windows start afresh at stream sample ``at_sample``."""
        self.windower.reset()
        self.features.reset()
        self._base = at_sample

    def push(self, samples: npt.ArrayLike) -> list[Decision]:
        """The decisions completed by these samples (``(n,)`` audio or ``(n, channels)`` rows)."""
        return [d for result in self.push_windows(samples) for d in result.decisions]

    def push_windows(self, samples: npt.ArrayLike) -> list[WindowResult]:
        """Each window these samples complete, in stream order."""
        windows, starts = self.windower.push(samples)
        return [self.window(w, int(s)) for w, s in zip(windows, starts, strict=True)]

    def window(self, window: np.ndarray, start: int) -> WindowResult:
        """Gate, embed, match and decide one window that starts at sample ``start`` (from the
        last restart); frames shared with the previous window are not recomputed."""
        began = time.perf_counter()
        offset_s = (self._base + start + self.embedder.window) / self.sample_rate
        if not self.gate.is_active(window):
            decisions = self.decider.push(offset_s, None, math.nan, self.thresholds.default)
            return self._done(offset_s, None, math.nan, None, decisions, (0.0, 0.0), began)
        features = self.features.features(window, start)
        t0 = time.perf_counter()
        embedding = self.embedder.embed_features(features)
        t1 = time.perf_counter()
        times_ms = ((t0 - began) * 1e3, (t1 - t0) * 1e3)
        label, score = self.match(embedding)
        t = self.thresholds
        threshold = t.for_label(label) if label is not None else t.default
        decisions = self.decider.push(offset_s, label, score, threshold)
        self._recent.append((label, score, embedding))
        return self._done(offset_s, label, score, embedding, decisions, times_ms, began)

    def _done(
        self,
        offset_s: float,
        label: str | None,
        score: float,
        embedding: np.ndarray | None,
        decisions: list[Decision],
        times_ms: tuple[float, float],
        began: float,
    ) -> WindowResult:
        """``times_ms``: the front-end's and the model's share of the window."""
        if self.on_window is not None:
            self.on_window(offset_s, embedding)
        total_ms = (time.perf_counter() - began) * 1e3
        return WindowResult(offset_s, label, score, embedding, decisions, *times_ms, total_ms)

    def match(self, embedding: np.ndarray) -> tuple[str | None, float]:
        """The best label and its score; no label when the open-set margin is not met."""
        scores = self.scorer.scores(embedding)[0]
        if scores.shape[0] == 0:
            return None, -math.inf
        best = int(np.argmax(scores))
        score = float(scores[best])
        if self.margin > 0.0 and scores.shape[0] > 1:
            second = float(np.partition(scores, -2)[-2])
            if score - second < self.margin:
                return None, score
        return self.scorer.labels[best], score

    def embedding_of(self, decision: Decision) -> np.ndarray | None:
        """The embedding of the window that scored the decision's score (the event's best)."""
        for label, score, embedding in reversed(self._recent):
            if label == decision.label and score == decision.score:
                found: np.ndarray = embedding
                return found
        return None

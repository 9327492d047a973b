"""From per-window matches to events: N-of-M debouncing, a refractory period, near misses.

The pipeline pushes *every* window in stream order (gated, silent windows too, with label
``None``), so that M counts consecutive windows::

    decider = Decider(DecisionRule(n_of=2, m=3, refractory_s=2.0, near_miss_margin=0.05))
    for decision in decider.push(offset_s, label, score, threshold):
        ...  # decision.kind is "event" or "near_miss"

Rules, per label:

- a window *matches* its best label when ``score >= threshold`` (NaN never matches);
- an **event** is emitted for a label when at least ``n_of`` of the last ``m`` windows matched
  that label. Its ``score`` is the best score among those matching windows, its ``threshold`` the
  current window's, its ``offset_s`` the current window's. The windows that made the event are
  then used up: they do not count towards the next event;
- after an event, that label is in its **refractory period** for ``refractory_s`` seconds (from
  the event's offset, exclusive at the end): its matches are ignored, no event and no near miss
  for it. Other labels are unaffected. With ``hold=True`` each match of the label during its
  refractory period renews it (``refractory_s`` from that window): one continuous occurrence, however
  long, gives one event, and the next event needs ``refractory_s`` without a match first;
- a **near miss** is a window whose best score is below the threshold by at most
  ``near_miss_margin`` (``threshold - margin <= score < threshold``); it is reported on its own
  and never counts towards an event. ``near_miss_margin=0`` turns near misses off.

Offsets are seconds from the start of the source to the end of the window; they must not go
backwards (call :meth:`Decider.reset` when a new source starts).

numpy/stdlib only, no I/O.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from edgesiam.errors import ConfigError, DataError

__all__ = ["MAX_M", "Decider", "Decision", "DecisionKind", "DecisionRule"]

DecisionKind = Literal["event", "near_miss"]

MAX_M: Final = 1000
"""The longest history a rule may look at (windows)."""


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _non_negative(value: object, name: str, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{name} must be a number ({unit}), got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0.0:
        raise ConfigError(f"{name} must be a finite number >= 0 ({unit}), got {value!r}")
    return number


@dataclass(frozen=True)
class DecisionRule:
    """When window matches become an event.

    ``n_of`` of the last ``m`` windows must match one label (1 ≤ ``n_of`` ≤ ``m`` ≤
    :data:`MAX_M`); then nothing for that label for ``refractory_s`` seconds (≥ 0). Windows
    scoring within ``near_miss_margin`` (≥ 0, in score units) below the threshold are near
    misses.
    """

    n_of: int = 1
    m: int = 1
    refractory_s: float = 0.0
    near_miss_margin: float = 0.0
    hold: bool = False
    """renew the refractory period while the label keeps matching (one event per occurrence)"""

    def __post_init__(self) -> None:
        n_of = _positive_int(self.n_of, "n_of (matching windows needed)")
        m = _positive_int(self.m, "m (windows looked at)")
        object.__setattr__(self, "n_of", n_of)
        object.__setattr__(self, "m", m)
        if n_of > m:
            raise ConfigError(
                f"n_of ({n_of}) cannot be larger than m ({m}): an event needs n_of matching "
                f"windows among the last m; use n_of <= m (e.g. n_of={m}, m={n_of})"
            )
        if m > MAX_M:
            raise ConfigError(f"m must be at most {MAX_M} windows, got {m}")
        object.__setattr__(
            self, "refractory_s", _non_negative(self.refractory_s, "refractory_s", "seconds")
        )
        margin = _non_negative(self.near_miss_margin, "near_miss_margin", "score units")
        if margin > 2.0:
            raise ConfigError(
                f"near_miss_margin is in cosine units (scores lie in [-1, 1]); {margin} would "
                "flag every window, use something like 0.05"
            )
        object.__setattr__(self, "near_miss_margin", margin)


@dataclass(frozen=True)
class Decision:
    """An event (``kind="event"``) or a near miss (``kind="near_miss"``) for one label."""

    kind: DecisionKind
    label: str
    score: float
    threshold: float
    offset_s: float


class Decider:
    """Applies a :class:`DecisionRule` to a stream of per-window best matches.

    State is bounded: the last ``m`` windows and one refractory deadline per label that has had
    an event (kept while it runs).
    """

    def __init__(self, rule: DecisionRule | None = None) -> None:
        self.rule = rule if rule is not None else DecisionRule()
        # (label, score) of each of the last m windows that matched; None for the others
        self._history: deque[tuple[str, float] | None] = deque(maxlen=self.rule.m)
        self._refractory_until: dict[str, float] = {}
        self._last_offset = -math.inf

    def __repr__(self) -> str:
        return f"Decider({self.rule!r})"

    def reset(self) -> None:
        """Forget the history and every refractory period (a new source starts)."""
        self._history.clear()
        self._refractory_until.clear()
        self._last_offset = -math.inf

    def in_refractory(self, label: str, offset_s: float) -> bool:
        """Whether ``label`` is in its refractory period at ``offset_s``."""
        until = self._refractory_until.get(label)
        return until is not None and offset_s < until

    def push(
        self, offset_s: float, label: str | None, score: float, threshold: float
    ) -> list[Decision]:
        """One window: its end offset, best label (None: no candidate, e.g. gated), score and
        that label's threshold. Returns the decisions it completes (empty most of the time).
        """
        offset = float(offset_s)
        if math.isnan(offset):
            raise DataError("a window offset is NaN")
        if offset < self._last_offset:
            raise DataError(
                f"window offsets must not go backwards ({offset} s after {self._last_offset} s); "
                "reset the decider when a new source starts"
            )
        self._last_offset = offset
        self._expire(offset)

        score_f = float(score)
        threshold_f = float(threshold)
        held = self.rule.hold and label is not None and score_f >= threshold_f
        if held and label is not None and self.in_refractory(label, offset):
            self._refractory_until[label] = offset + self.rule.refractory_s  # it goes on
        candidate = label is not None and not self.in_refractory(label, offset)
        matched = candidate and score_f >= threshold_f  # False for NaN
        if not matched or label is None:
            self._history.append(None)
            margin = self.rule.near_miss_margin
            if (
                candidate
                and label is not None
                and margin > 0.0
                and threshold_f - margin <= score_f < threshold_f
            ):
                return [Decision("near_miss", label, score_f, threshold_f, offset)]
            return []

        self._history.append((label, score_f))
        hits = [entry for entry in self._history if entry is not None and entry[0] == label]
        if len(hits) < self.rule.n_of:
            return []
        best = max(s for _, s in hits)
        # the windows that made this event are used up
        for i, entry in enumerate(self._history):
            if entry is not None and entry[0] == label:
                self._history[i] = None
        if self.rule.refractory_s > 0.0:
            self._refractory_until[label] = offset + self.rule.refractory_s
        return [Decision("event", label, best, threshold_f, offset)]

    def _expire(self, offset: float) -> None:
        if self._refractory_until:
            done = [k for k, until in self._refractory_until.items() if offset >= until]
            for k in done:
                del self._refractory_until[k]

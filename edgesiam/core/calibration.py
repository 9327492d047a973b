"""Thresholds for a target number of false matches per hour of the device's own background.

A user states how often the device may be wrong (``max_false_per_hour``, default 1/24: once a day);
the background the device hears (a few minutes of it, with none of the enrolled labels in it) says
how high the impostor scores go. :func:`calibrate_label` works on one score sequence: the device's
calibration (:mod:`edgesiam.runtime.gallery_calibration`) gives it each window's *best* score
over the enrolled labels, since that is what the device decides on, so the target holds for all
labels together:

1. **impostor scores**: every active background window's score (in stream order), plus scores
   that are not a stream: the enrolled templates against the other labels and the bundle's cohort
   (people or sounds the device may also meet);
2. **the decision rule's share**: the background stream is run through the device's N-of-M rule
   (:class:`~edgesiam.core.decision.Decider`) at a threshold low enough for about
   :data:`RULE_MATCHES` matching windows; ``events / matching windows`` (smoothed, never above 1)
   is how many false matches become false events. Overlapping windows are correlated, so this is
   measured on the stream, not assumed from independence;
3. **the tail**: false matches per hour = active windows per hour × share × P(score ≥ t). A few
   minutes of background cannot show a rate of once a day directly, so the top
   :data:`TAIL_FRACTION` of the impostor scores is fitted with an exponential tail
   (peaks over threshold) and the threshold is read from it.

numpy only, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from edgesiam.core.decision import Decider, DecisionRule
from edgesiam.errors import DataError

__all__ = [
    "DEFAULT_FALSE_PER_HOUR",
    "LabelCalibration",
    "calibrate_label",
    "leave_one_out_hits",
    "rule_share",
    "tail_threshold",
]


DEFAULT_FALSE_PER_HOUR: Final = 1.0 / 24.0
TAIL_FRACTION: Final = 0.2
"""The share of the highest impostor scores the exponential tail is fitted to."""
MIN_TAIL: Final = 10
_COSINE_MAX: Final = 1.0 - 1e-6
REJECT_MARGIN: Final = 0.01
"""A rejected window's score plus this is the least its label's threshold becomes (the window
comes back compressed to int8, which moves its score by a few thousandths)."""
RULE_MATCHES: Final = 20
"""About this many background windows must match for the rule's share to be measured."""


@dataclass(frozen=True)
class LabelCalibration:
    """One label's calibrated threshold and what it rests on."""

    label: str
    threshold: float
    window_rate: float
    """the false-match probability per active window the threshold is set for"""
    rule_share: float
    background_windows: int
    impostor_trials: int
    highest_impostor: float
    hit_rate: float | None = None
    """share of the label's own enrollment clips matched at the threshold (leave-one-out)"""
    active_fraction: float = 1.0
    """share of the background's windows that the energy gate let through"""
    rejected: int = 0
    """windows a reviewer rejected for this label, which the threshold is above"""


def tail_threshold(impostor: npt.ArrayLike, rate: float, cosine: bool = True) -> float:
    """The score that impostors exceed with probability ``rate``: empirical where the sample is
    dense enough, else from an exponential fitted to its top :data:`TAIL_FRACTION`.

    Cosines are bounded by 1, so their tail is fitted on ``atanh(score)`` (unbounded) and the
    threshold mapped back: it approaches 1 but never passes it."""
    s = np.sort(np.asarray(impostor, dtype=np.float64))
    s = s[np.isfinite(s)]
    if cosine:
        z = tail_threshold(np.arctanh(np.clip(s, -_COSINE_MAX, _COSINE_MAX)), rate, cosine=False)
        return float(np.tanh(z))
    if s.size < MIN_TAIL:
        raise DataError(f"calibration needs >= {MIN_TAIL} impostor scores, got {s.size}")
    n_tail = max(MIN_TAIL, int(TAIL_FRACTION * s.size))
    u = float(s[-n_tail - 1]) if n_tail < s.size else float(s[0])
    p_u = n_tail / s.size
    if rate >= p_u:
        return float(np.quantile(s, 1.0 - rate))
    beta = max(float(np.mean(s[-n_tail:] - u)), 1e-6)
    return u + beta * math.log(p_u / rate)


def rule_share(background: npt.ArrayLike, rule: DecisionRule, hop_s: float) -> float:
    """False events per matching background window under ``rule`` (NaN = gated window).

    Measured at the threshold where about :data:`RULE_MATCHES` windows match; ``(events + 1) /
    (matches + 1)``, so a rule that never fired on a short background is not trusted blindly.
    """
    seq = np.asarray(background, dtype=np.float64)
    finite = np.sort(seq[np.isfinite(seq)])
    if (rule.n_of == 1 and rule.refractory_s == 0.0) or finite.size == 0:
        return 1.0
    at = float(finite[-min(RULE_MATCHES, finite.size)])
    decider = Decider(DecisionRule(rule.n_of, rule.m, rule.refractory_s, 0.0, rule.hold))
    events = 0
    for i, score in enumerate(seq):
        label = None if math.isnan(score) else "x"
        events += len(decider.push((i + 1) * hop_s, label, score, at))
    matches = int(np.sum(finite >= at))
    return min(1.0, (events + 1) / (matches + 1))


def calibrate_label(
    label: str,
    background: npt.ArrayLike,
    extra: npt.ArrayLike,
    rule: DecisionRule,
    hop_s: float,
    max_false_per_hour: float = DEFAULT_FALSE_PER_HOUR,
    *,
    cosine: bool = True,
    share: float | None = None,
    active_fraction: float | None = None,
    above: npt.ArrayLike = (),
) -> LabelCalibration:
    """The threshold at which ``label`` should give ``max_false_per_hour`` false events.

    ``background``: the label's score for each background window in stream order (NaN: gated);
    ``extra``: impostor scores that are not a stream (other labels' templates, a cohort).
    ``cosine``: scores are cosines (bounded by 1), not normalised scores. ``share`` and ``active_fraction``, when known from an earlier calibration, replace what the
    stream would say (a stored cohort is no longer in stream order). ``above``: scores the
    threshold must exceed (windows a reviewer rejected for this label).
    """
    if not max_false_per_hour > 0.0:
        raise DataError(f"max_false_per_hour must be > 0, got {max_false_per_hour}")
    seq = np.asarray(background, dtype=np.float64)
    active = seq[np.isfinite(seq)]
    if active.size == 0:
        raise DataError("the background has no active window (all gated as silent)")
    impostor = np.concatenate([active, np.asarray(extra, dtype=np.float64).ravel()])
    share = rule_share(seq, rule, hop_s) if share is None else share
    fraction = active.size / seq.size if active_fraction is None else active_fraction
    rate = min(1.0, max_false_per_hour / (3600.0 / hop_s * fraction * share))
    threshold = tail_threshold(impostor, rate, cosine)
    rejected = np.asarray(above, dtype=np.float64).ravel()
    if rejected.size:
        threshold = max(threshold, float(rejected.max()) + REJECT_MARGIN)
    return LabelCalibration(
        label=label,
        threshold=threshold,
        window_rate=rate,
        rule_share=share,
        background_windows=int(active.size),
        impostor_trials=int(impostor.size),
        highest_impostor=float(np.max(impostor)),
        active_fraction=fraction,
        rejected=int(rejected.size),
    )


def leave_one_out_hits(own: npt.ArrayLike, threshold: float) -> float | None:
    """Share of a label's templates whose best score against its *other* templates reaches
    ``threshold``: ``own`` is the label's ``(k, k)`` template-vs-template score matrix. None for
    a label with one template."""
    s = np.array(own, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < 2:
        return None
    np.fill_diagonal(s, -np.inf)
    return float(np.mean(s.max(axis=1) >= threshold))

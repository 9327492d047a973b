"""Thresholds for false matches per hour: the tail fit, the decision rule's share, rejected windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgesiam.core.calibration import (
    REJECT_MARGIN,
    calibrate_label,
    leave_one_out_hits,
    rule_share,
    tail_threshold,
)
from edgesiam.core.decision import DecisionRule


def test_the_tail_extrapolates_an_exponential_beyond_the_sample() -> None:
    scores = np.random.default_rng(0).exponential(0.1, size=5000)
    # P(S >= t) = exp(-t / 0.1): 1e-6 is far beyond 5000 samples, at t = 0.1 * ln(1e6)
    found = tail_threshold(scores, 1e-6, cosine=False)
    assert found == pytest.approx(0.1 * math.log(1e6), rel=0.1)
    assert found > scores.max()
    assert tail_threshold(scores, 0.5, cosine=False) == pytest.approx(np.median(scores), rel=0.01)


def test_a_cosine_threshold_never_passes_one() -> None:
    scores = np.random.default_rng(1).uniform(0.5, 0.99, size=500)
    found = tail_threshold(scores, 1e-9)
    assert 0.99 < found < 1.0


def test_the_rules_share_is_measured_on_the_stream() -> None:
    rule = DecisionRule(n_of=2, m=3)
    isolated = np.zeros(300)
    isolated[::10] = 0.9  # 30 single high windows: never two in three
    assert rule_share(isolated, rule, 0.5) == pytest.approx(1 / 31)
    paired = np.zeros(300)
    paired[::10] = paired[1::10] = 0.9  # pairs: each pair is one event
    assert rule_share(paired, rule, 0.5) == pytest.approx(0.5, abs=0.05)
    assert rule_share(isolated, DecisionRule(), 0.5) == 1.0


def test_a_label_gets_the_rate_the_target_allows() -> None:
    rng = np.random.default_rng(2)
    background = np.tanh(rng.normal(0.3, 0.15, size=3600))
    background[::4] = np.nan  # a quarter gated as silent
    once_a_day = calibrate_label("a", background, [], DecisionRule(), 0.5, 1 / 24)
    # 7200 windows/hour, 3/4 active, every match an event: 1/24 per hour → ~7.7e-6 per window
    assert once_a_day.window_rate == pytest.approx(1 / 24 / (7200 * 0.75))
    assert once_a_day.active_fraction == pytest.approx(0.75)
    ten_an_hour = calibrate_label("a", background, [], DecisionRule(), 0.5, 10.0)
    assert ten_an_hour.threshold < once_a_day.threshold < 1.0
    assert once_a_day.threshold > np.nanmax(background)


def test_a_rejected_window_is_always_below_the_threshold() -> None:
    background = np.random.default_rng(3).uniform(0.0, 0.5, size=400)
    found = calibrate_label("a", background, [], DecisionRule(), 0.5, 10.0, above=[0.97])
    assert found.threshold == pytest.approx(0.97 + REJECT_MARGIN) and found.rejected == 1


def test_leave_one_out_hits() -> None:
    own = np.array([[1.0, 0.9, 0.5], [0.9, 1.0, 0.6], [0.5, 0.6, 1.0]])
    assert leave_one_out_hits(own, 0.8) == pytest.approx(2 / 3)
    assert leave_one_out_hits(own[:1, :1], 0.8) is None

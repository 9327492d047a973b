"""N-of-M decisions, refractory periods and near misses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

from edgesiam.core.decision import Decider, Decision, DecisionRule
from edgesiam.errors import ConfigError, DataError

T = 0.5  # threshold used throughout


def run(
    decider: Decider, windows: Sequence[tuple[str | None, float]], hop: float = 0.25
) -> list[tuple[int, Decision]]:
    """Push windows ending every ``hop`` seconds; returns (window index, decision) pairs."""
    out = []
    for i, (label, score) in enumerate(windows):
        for d in decider.push((i + 1) * hop, label, score, T):
            out.append((i, d))
    return out


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_of": 3, "m": 2}, r"n_of \(3\) cannot be larger than m \(2\)"),
        ({"n_of": 0}, "n_of"),
        ({"m": 0}, "m "),
        ({"n_of": True}, "n_of"),
        ({"n_of": 1.5}, "n_of"),
        ({"m": 5000, "n_of": 1}, "at most"),
        ({"refractory_s": -1.0}, "refractory_s"),
        ({"refractory_s": math.inf}, "refractory_s"),
        ({"near_miss_margin": -0.1}, "near_miss_margin"),
        ({"near_miss_margin": 3.0}, "cosine units"),
    ],
)
def test_conflicting_or_bad_rules_are_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DecisionRule(**kwargs)


def test_every_match_is_an_event_by_default() -> None:
    events = run(Decider(), [("a", 0.6), ("a", 0.4), ("b", 0.9), (None, 0.0)])
    assert [(i, d.label) for i, d in events] == [(0, "a"), (2, "b")]
    assert events[0][1] == Decision("event", "a", 0.6, T, 0.25)


def test_two_of_three_needs_two_matches_within_three_windows() -> None:
    d = Decider(DecisionRule(n_of=2, m=3))
    # a . . a: too far apart; then a . a fires on the second a
    events = run(d, [("a", 0.6), ("a", 0.1), (None, 0), ("a", 0.7), ("b", 0.2), ("a", 0.8)])
    assert [(i, e.label, e.score) for i, e in events] == [(5, "a", 0.8)]
    assert events[0][1].offset_s == 6 * 0.25


def test_labels_do_not_add_up_and_windows_are_used_once() -> None:
    d = Decider(DecisionRule(n_of=2, m=3))
    events = run(d, [("a", 0.9), ("b", 0.9), ("a", 0.6), ("a", 0.7), ("a", 0.7), ("a", 0.6)])
    # window 2 completes a (windows 0, 2; score = best of them); 3 alone is not enough; 4 fires
    assert [(i, e.label, e.score) for i, e in events] == [(2, "a", 0.9), (4, "a", 0.7)]


def test_refractory_period_silences_only_that_label() -> None:
    d = Decider(DecisionRule(n_of=1, m=1, refractory_s=1.0))
    windows = [("a", 0.9)] * 6 + [("b", 0.9)]
    events = run(d, windows, hop=0.25)
    # event at 0.25 s; a is silent while offset < 1.25 s; the next a event is at 1.25 s
    assert [(e.label, e.offset_s) for _, e in events] == [("a", 0.25), ("a", 1.25), ("b", 1.75)]
    assert d.in_refractory("a", 2.0) and d.in_refractory("b", 2.0)
    assert not d.in_refractory("a", 2.25) and not d.in_refractory("c", 2.0)


def test_near_misses_are_separate_and_never_make_events() -> None:
    d = Decider(DecisionRule(n_of=2, m=2, refractory_s=10.0, near_miss_margin=0.05))
    out = run(d, [("a", 0.47), ("a", 0.46), ("a", 0.44), ("a", 0.6), ("a", 0.48), ("a", 0.6)])
    kinds = [(i, e.kind, e.label) for i, e in out]
    assert kinds == [(0, "near_miss", "a"), (1, "near_miss", "a"), (4, "near_miss", "a")]
    # then two matches in a row make the event, after which near misses of "a" are silent
    more = d.push(2.0, "a", 0.7, T) + d.push(2.25, "a", 0.48, T)
    assert [e.kind for e in more] == ["event"]
    assert [e.kind for e in Decider(DecisionRule()).push(1.0, "a", 0.49, T)] == []  # margin 0


def test_unmatched_windows_nan_scores_and_offsets() -> None:
    d = Decider(DecisionRule(n_of=1, m=1, near_miss_margin=0.1))
    assert d.push(1.0, None, 0.99, T) == []
    assert d.push(1.0, "a", math.nan, T) == []
    with pytest.raises(DataError, match="backwards"):
        d.push(0.5, "a", 0.9, T)
    with pytest.raises(DataError, match="NaN"):
        d.push(math.nan, "a", 0.9, T)
    d.reset()
    assert [e.kind for e in d.push(0.5, "a", 0.9, T)] == ["event"]


def test_state_is_bounded() -> None:
    d = Decider(DecisionRule(n_of=2, m=4, refractory_s=0.5))
    for i in range(10_000):
        d.push(i * 0.1, f"l{i % 7}", 0.9, T)
    assert len(d._history) <= 4 and len(d._refractory_until) <= 7


def test_hold_makes_one_event_of_one_continuous_occurrence() -> None:
    """An 8.8 s sound (35 windows every 0.25 s) with 2-of-3 and a 2 s refractory period: without
    hold it fires again each time the refractory period runs out; with hold, once. After 2 s
    without a match the next occurrence is a new event."""
    sound: list[tuple[str | None, float]] = [("saw", 0.9)] * 35
    pause: list[tuple[str | None, float]] = [(None, math.nan)] * 8  # 2 s of gated windows
    plain = run(Decider(DecisionRule(n_of=2, m=3, refractory_s=2.0)), sound)
    assert len(plain) >= 3  # what a user saw: one long sound, several events
    held = run(
        Decider(DecisionRule(n_of=2, m=3, refractory_s=2.0, hold=True)), sound + pause + sound
    )
    assert [(i, e.label) for i, e in held] == [(1, "saw"), (35 + 8 + 1, "saw")]


def test_hold_is_renewed_only_by_matches_of_that_label() -> None:
    d = Decider(DecisionRule(n_of=1, m=1, refractory_s=1.0, hold=True))
    windows = [("a", 0.9), ("a", 0.4), ("a", 0.4), ("a", 0.4), ("b", 0.9), ("a", 0.9)]
    # a at 0.25 s; the weak a windows (below threshold) do not renew it: refractory ends at 1.25 s
    events = run(d, windows)
    assert [(e.label, e.offset_s) for _, e in events] == [("a", 0.25), ("b", 1.25), ("a", 1.5)]

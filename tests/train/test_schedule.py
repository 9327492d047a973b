from __future__ import annotations

import itertools

import pytest

from edgesiam.train.loop import warmup_cosine


def test_warmup_rises_then_cosine_decays_to_the_floor() -> None:
    total = 200
    factors = [warmup_cosine(s, total) for s in range(total + 5)]
    ramp = round(0.05 * total)
    assert factors[0] == pytest.approx(1 / ramp)
    assert factors[ramp - 1] == pytest.approx(1.0)
    decay = factors[ramp:total]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert factors[total] == pytest.approx(0.01)
    assert factors[-1] == pytest.approx(0.01)  # past the end: stays at the floor


def test_longer_schedule_on_resume_is_the_longer_curve() -> None:
    """The factor depends on (step, total) only, so resuming with more epochs just stretches it."""
    assert warmup_cosine(50, 100) < warmup_cosine(50, 400)

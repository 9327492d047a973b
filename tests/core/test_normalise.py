"""Adaptive s-norm on the device: per-label scores worked out by hand from the formula."""

from __future__ import annotations

import numpy as np
import pytest

from edgesiam.core.matching import Gallery
from edgesiam.core.normalise import (
    MIN_CENTRE,
    CentredScorer,
    NormalisedScorer,
    adaptive_s_norm,
    background_mean,
    centre_rows,
    cohort_statistics,
    window_recording_trials,
)


def unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def test_a_labels_score_is_its_best_templates_normalised_score() -> None:
    rng = np.random.default_rng(0)
    templates = unit(rng.normal(size=(5, 8)))
    labels = ["b", "a", "b", "c", "a"]
    cohort = rng.normal(size=(40, 8))
    query = unit(rng.normal(size=(3, 8)))
    gallery = Gallery.from_templates(templates, labels)
    scorer = NormalisedScorer(gallery.embeddings, gallery.template_labels, cohort, top_k=6)
    got = scorer.scores(query)
    assert scorer.labels == ["a", "b", "c"] and got.shape == (3, 3)
    t = gallery.embeddings
    expected = adaptive_s_norm(
        query @ t.T, cohort_statistics(query, cohort, 6), cohort_statistics(t, cohort, 6)
    )
    owners = np.array(gallery.template_labels)
    for j, label in enumerate(scorer.labels):
        assert got[:, j] == pytest.approx(expected[:, owners == label].max(axis=1), rel=1e-5)
    # by hand for one trial: query 0 against the 'c' template
    q, c = query[0], t[owners == "c"][0]
    top_q = np.sort(unit(cohort) @ q)[-6:]
    top_c = np.sort(unit(cohort) @ c)[-6:]
    s = q @ c
    hand = 0.5 * ((s - top_q.mean()) / top_q.std() + (s - top_c.mean()) / top_c.std())
    assert got[0, 2] == pytest.approx(hand, rel=1e-5)


def test_a_voice_like_many_others_loses_its_advantage() -> None:
    """A window close to every cohort member (a "hub") has the higher raw cosine to the template,
    yet the lower normalised score than a window that is close to the template only."""
    rng = np.random.default_rng(1)
    d = 16
    hub = unit(rng.normal(size=d))
    away = rng.normal(size=d)
    away = unit(away - (away @ hub) * hub)
    cohort = unit(hub + 0.1 * rng.normal(size=(30, d)))
    template = unit(hub + 0.6 * away)
    generic, distinct = hub, unit(0.2 * hub + away)
    assert generic @ template > distinct @ template + 0.1
    scorer = NormalisedScorer(template[None], ["x"], cohort, top_k=10)
    normalised = scorer.scores(np.stack([generic, distinct]))[:, 0]
    assert normalised[1] > normalised[0] + 1.0


def test_window_trials_leave_the_own_recording_out() -> None:
    windows = unit(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    recordings = unit(np.array([[1.0, 0.1], [0.1, 1.0], [1.0, 0.0]]))
    genuine, impostor = window_recording_trials(windows, [0, 1, 2], recordings, [0, 1, 0])
    assert genuine.size == 2 and impostor.size == 4  # 3 windows x 2 other recordings


def test_an_empty_gallery_scores_nothing_and_a_tiny_cohort_is_refused() -> None:
    scorer = NormalisedScorer(np.zeros((0, 4)), [], np.eye(4), top_k=2)
    assert scorer.scores(np.ones(4)).shape == (1, 0)
    with pytest.raises(ValueError, match=">= 2"):
        NormalisedScorer(np.eye(4)[:1], ["a"], np.eye(4)[:1], top_k=1)


def test_centring_on_the_background_removes_what_every_embedding_shares() -> None:
    rng = np.random.default_rng(7)
    room = 3.0 * unit(rng.normal(size=16))  # what the device's microphone adds to everything
    people = unit(rng.normal(size=(3, 16)))
    background = unit(room + unit(rng.normal(size=(200, 16))))  # strangers talking in that room
    alice, bob = unit(room + people[0]), unit(room + people[1])
    assert float(alice @ bob) > 0.8  # through the room, two strangers look alike
    mean = background_mean(np.vstack([background, np.full((5, 16), np.nan)]))  # gated rows
    assert mean is not None
    assert mean == pytest.approx(background.mean(axis=0))
    a, b = centre_rows(np.stack([alice, bob]), mean)
    assert abs(float(a @ b)) < 0.5 and np.linalg.norm(a) == pytest.approx(1.0, rel=1e-5)
    assert background_mean(background[: MIN_CENTRE - 1]) is None  # too little to centre on
    # a row the mean would cancel keeps its own direction; NaN rows stay NaN
    kept = centre_rows(np.stack([mean, np.full(16, np.nan)]), mean)
    assert kept[0] == pytest.approx(unit(mean), rel=1e-5) and np.isnan(kept[1]).all()


def test_a_centred_scorer_scores_centred_queries_against_centred_templates() -> None:
    rng = np.random.default_rng(8)
    templates = unit(rng.normal(size=(4, 8)) + 2.0)
    labels = ["b", "a", "a", "c"]
    mean = unit(rng.normal(size=(50, 8)) + 2.0).mean(axis=0)
    centred = Gallery.from_templates(centre_rows(templates, mean), labels)
    scorer = CentredScorer(centred, mean)
    queries = unit(rng.normal(size=(3, 8)) + 2.0)
    got = scorer.scores(queries)
    assert list(scorer.labels) == ["a", "b", "c"]
    q, t = centre_rows(queries, mean), centre_rows(templates, mean)
    assert got[:, 0] == pytest.approx(np.maximum(q @ t[1], q @ t[2]), abs=1e-5)
    assert got[:, 1] == pytest.approx(q @ t[0], abs=1e-5)
    assert not np.allclose(got, Gallery.from_templates(templates, labels).scores(queries))

"""Metrics, with expected values worked out by hand on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesiam.core import metrics
from edgesiam.core.metrics import (
    cosine_matrix,
    det_curve,
    equal_error_rate,
    few_shot_accuracy,
    leave_one_out_top1,
    min_dcf,
    threshold_at_fmr,
    trial_scores,
)
from edgesiam.errors import DataError


def clusters(
    n_labels: int, per_label: int, dim: int = 16, noise: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_labels, dim))
    emb = np.repeat(centres, per_label, axis=0) + noise * rng.normal(
        size=(n_labels * per_label, dim)
    )
    labels = [f"L{i}" for i in range(n_labels) for _ in range(per_label)]
    return emb, labels


# --- cosine and trials ------------------------------------------------------------------------


def test_cosine_matrix_normalises_inside() -> None:
    a = np.array([[2.0, 0.0], [0.0, 0.0]])
    b = np.array([[1.0, 1.0], [0.0, -3.0]])
    s = cosine_matrix(a, b)
    assert s.shape == (2, 2)
    np.testing.assert_allclose(s, [[1 / np.sqrt(2), 0.0], [0.0, 0.0]], atol=1e-12)


def test_cosine_matrix_rejects_mismatched_dimensions() -> None:
    with pytest.raises(ValueError, match="dimension"):
        cosine_matrix(np.ones((2, 3)), np.ones((2, 4)))


def test_trial_scores_splits_pairs_and_selects_hard_impostors() -> None:
    emb = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    labels = ["a", "a", "b", "b"]
    groups = ["x", "y", "x", None]
    t = trial_scores(emb, labels, groups)
    # genuine (0,1), (2,3); impostor (0,2), (0,3), (1,2), (1,3); only (0,2) shares a group
    np.testing.assert_allclose(np.sort(t.genuine), [0.0, 0.6])
    np.testing.assert_allclose(np.sort(t.impostor), [-1.0, -0.6, 0.0, 0.8])
    np.testing.assert_allclose(t.hard_impostor, [0.0])


def test_trial_scores_none_groups_are_never_hard_and_no_groups_gives_empty() -> None:
    emb = np.eye(3)
    assert trial_scores(emb, ["a", "b", "c"], [None, None, None]).hard_impostor.size == 0
    t = trial_scores(emb, ["a", "b", "c"])
    assert t.hard_impostor.size == 0 and t.impostor.size == 3 and t.genuine.size == 0


def test_trial_scores_blocks_match_the_upper_triangle(monkeypatch: pytest.MonkeyPatch) -> None:
    emb, labels = clusters(5, 4, noise=1.0)
    groups = [None if i % 3 == 0 else f"g{i % 2}" for i in range(len(labels))]
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 7 * len(labels))  # several blocks
    t = trial_scores(emb, labels, groups)
    s = cosine_matrix(emb, emb)
    i, j = np.triu_indices(len(labels), 1)
    lab = np.array(labels)
    grp = np.array([g or "" for g in groups])
    same = lab[i] == lab[j]
    hard = ~same & (grp[i] == grp[j]) & (grp[i] != "")
    np.testing.assert_allclose(t.genuine, s[i, j][same])
    np.testing.assert_allclose(t.impostor, s[i, j][~same])
    np.testing.assert_allclose(t.hard_impostor, s[i, j][hard])
    assert t.genuine.dtype == np.float64


# --- DET, EER, minDCF, thresholds -------------------------------------------------------------

GEN = [0.9, 0.8, 0.3]
IMP = [0.5]


def test_det_curve_by_hand() -> None:
    thresholds, fmr, fnmr = det_curve(GEN, IMP)
    np.testing.assert_allclose(thresholds[:-1], [0.3, 0.5, 0.8, 0.9])
    assert thresholds[-1] > 0.9
    np.testing.assert_allclose(fmr, [1, 1, 0, 0, 0])
    np.testing.assert_allclose(fnmr, [0, 1 / 3, 1 / 3, 2 / 3, 1])


def test_eer_interpolates_at_the_crossing() -> None:
    # gap fmr-fnmr is 2/3 at t=0.5 and -1/3 at t=0.8: crossing 2/3 of the way, EER 1/3 at t=0.7
    eer, threshold = equal_error_rate(GEN, IMP)
    assert eer == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.7)


def test_eer_of_separated_and_of_identical_scores() -> None:
    eer, threshold = equal_error_rate([0.8, 0.9, 0.95], [0.1, 0.2, 0.5])
    assert eer == 0.0
    assert 0.5 < threshold <= 0.8
    assert equal_error_rate([0.5, 0.5], [0.5, 0.5])[0] == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    eer, _ = equal_error_rate(rng.normal(size=4000), rng.normal(size=4000))
    assert eer == pytest.approx(0.5, abs=0.03)


def test_empty_trials_raise_a_data_error() -> None:
    with pytest.raises(DataError, match="genuine"):
        equal_error_rate([], [0.1])


def test_min_dcf_by_hand() -> None:
    gen, imp = [0.9, 0.8, 0.7, 0.3], [0.75, 0.1]
    # thresholds .1 .3 .7 .75 .8 .9 above: fmr 1 .5 .5 .5 0 0 0, fnmr 0 0 .25 .25 .5 .75 1
    # p=.25: .25·fnmr+.75·fmr is smallest at t=.8: .125; normalised by min(.25, .75) → 0.5
    assert min_dcf(gen, imp, p_target=0.25) == pytest.approx(0.5)
    # p=.9: .9·fnmr+.1·fmr is smallest at t=.3: .05; normalised by min(.9, .1) → 0.5
    assert min_dcf(gen, imp, p_target=0.9) == pytest.approx(0.5)
    # c_miss=2, p=.25: .5·fnmr+.75·fmr → .25 at t=.8 (and .375 at t=.3); normaliser .5 → 0.5
    assert min_dcf(gen, imp, p_target=0.25, c_miss=2.0) == pytest.approx(0.5)
    assert min_dcf([0.9], [0.1]) == 0.0
    assert min_dcf([0.1], [0.9]) == pytest.approx(1.0)


def test_threshold_at_fmr_exact() -> None:
    imp = [0.1, 0.5, 0.5, 0.9]
    assert threshold_at_fmr(imp, 0.25) == pytest.approx(0.9)  # accepts 0.9 only
    assert threshold_at_fmr(imp, 0.5) == pytest.approx(0.9)  # 0.5 would accept three
    assert threshold_at_fmr(imp, 0.75) == pytest.approx(0.5)
    assert threshold_at_fmr(imp, 1.0) == pytest.approx(0.1)
    # below 1/len: only FMR 0 qualifies, the float32 just above the highest impostor score
    for target in (0.0, 0.2):
        t = threshold_at_fmr(imp, target)
        assert t > 0.9 and np.float32(t) > np.float32(0.9) and t - 0.9 < 1e-6


def test_threshold_at_fmr_is_robust_to_rounding_of_the_target() -> None:
    imp = np.arange(100) / 100  # 0.29 * 100 is 28.999999999999996 in floating point
    assert threshold_at_fmr(imp, 0.29) == pytest.approx(0.71)


# --- few-shot and leave-one-out ---------------------------------------------------------------


def test_few_shot_is_perfect_on_separated_clusters() -> None:
    emb, labels = clusters(8, 7)
    for k_shot in (1, 5):
        acc, ci = few_shot_accuracy(emb, labels, n_way=5, k_shot=k_shot, episodes=50)
        assert acc == 1.0 and ci == 0.0


def test_few_shot_is_at_chance_on_random_embeddings() -> None:
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(200, 32))
    labels = [f"L{i % 20}" for i in range(200)]
    acc, ci = few_shot_accuracy(emb, labels, n_way=5, k_shot=1, episodes=400, seed=1)
    assert acc == pytest.approx(0.2, abs=0.04)
    assert 0.0 < ci < 0.04


def test_few_shot_is_deterministic_per_seed() -> None:
    rng = np.random.default_rng(4)
    emb = rng.normal(size=(60, 8))
    labels = [f"L{i % 10}" for i in range(60)]
    first = few_shot_accuracy(emb, labels, episodes=30, seed=7)
    assert few_shot_accuracy(emb, labels, episodes=30, seed=7) == first
    assert few_shot_accuracy(emb, labels, episodes=30, seed=8) != first


def test_few_shot_needs_enough_eligible_labels() -> None:
    emb, labels = clusters(4, 3)
    with pytest.raises(DataError, match="5-way 1-shot needs 5 labels"):
        few_shot_accuracy(emb, labels, n_way=5)
    emb, labels = clusters(6, 5)  # 5 recordings: none eligible for 5 shots + 1 query
    with pytest.raises(DataError, match="only 0 of 6"):
        few_shot_accuracy(emb, labels, n_way=5, k_shot=5)


def test_leave_one_out_by_hand() -> None:
    c_norm = np.hypot(0.98, 0.2)
    emb = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [0.98, 0.2]])
    labels = ["a", "a", "b", "b", "c"]
    # a1 → c (.98/c_norm), a2 → b2 (.96), b1 → b2 (.8), b2 → a2 (.96); c is a singleton: no query
    assert 0.98 / c_norm > 0.8
    assert leave_one_out_top1(emb, labels) == pytest.approx(0.25)


def test_leave_one_out_blocks_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    emb, labels = clusters(6, 4)
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 2 * len(labels))
    assert leave_one_out_top1(emb, labels) == 1.0
    with pytest.raises(DataError, match="two or more"):
        leave_one_out_top1(np.eye(3), ["a", "b", "c"])


# --- properties -------------------------------------------------------------------------------

scores = st.lists(
    st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, width=32), min_size=1, max_size=40
)


@settings(max_examples=150, deadline=None)
@given(genuine=scores, impostor=scores)
def test_det_is_monotone_and_spans_the_square(genuine: list[float], impostor: list[float]) -> None:
    thresholds, fmr, fnmr = det_curve(genuine, impostor)
    assert np.all(np.diff(thresholds) > 0)
    assert np.all(np.diff(fmr) <= 0) and np.all(np.diff(fnmr) >= 0)
    assert (fmr[0], fnmr[0], fmr[-1], fnmr[-1]) == (1.0, 0.0, 0.0, 1.0)


@settings(max_examples=150, deadline=None)
@given(genuine=scores, impostor=scores)
def test_eer_and_min_dcf_are_bounded(genuine: list[float], impostor: list[float]) -> None:
    eer, threshold = equal_error_rate(genuine, impostor)
    assert 0.0 <= eer <= 1.0
    assert min(genuine + impostor) <= threshold <= max(genuine + impostor) + 1e-6
    assert 0.0 <= min_dcf(genuine, impostor) <= 1.0 + 1e-12


@settings(max_examples=150, deadline=None)
@given(impostor=scores, target=st.floats(min_value=0.0, max_value=1.0))
def test_threshold_at_fmr_meets_the_target_and_is_smallest(
    impostor: list[float], target: float
) -> None:
    imp = np.asarray(impostor)
    t = threshold_at_fmr(imp, target)
    assert np.mean(imp >= t) <= target + 1e-9
    lower = np.unique(imp[imp < t])
    if lower.size:  # the next candidate down would exceed the target
        assert np.mean(imp >= lower[-1]) > target


def test_window_template_trials_by_hand() -> None:
    """Two labels; recording 0 and 1 are 'a', 2 is 'b'. Window 0 of recording 0 meets only
    recording 1 for 'a' (its own is left out) and recording 2 for 'b'."""
    from edgesiam.core.metrics import window_template_trials

    templates = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    windows = np.array([[1.0, 0.0], [0.0, 1.0]])
    genuine, impostor = window_template_trials(windows, [0, 2], templates, ["a", "a", "b"])
    # window 0 (rec 0, 'a'): genuine 0.6 (rec 1), impostor 0.0 (rec 2)
    # window 1 (rec 2, 'b'): no other 'b' recording → no genuine; impostor max(0.0, 0.8) = 0.8
    np.testing.assert_allclose(genuine, [0.6])
    np.testing.assert_allclose(sorted(impostor), [0.0, 0.8])


def test_window_template_trials_score_as_the_runtime_gallery_does() -> None:
    """The device's Gallery (aggregate max) gives the same per-label scores."""
    from edgesiam.core.matching import Gallery
    from edgesiam.core.metrics import window_template_trials

    rng = np.random.default_rng(3)
    templates = rng.standard_normal((7, 5))
    labels = ["b", "a", "c", "a", "b", "c", "a"]
    windows = rng.standard_normal((4, 5))
    windows /= np.linalg.norm(windows, axis=1, keepdims=True)  # as the model's output is
    owner = [1, 2, 6, 0]
    genuine, impostor = window_template_trials(windows, owner, templates, labels)
    want_genuine: list[float] = []
    want_impostor: list[float] = []
    for w, o in zip(windows, owner, strict=True):
        gallery = Gallery(5)
        for i, (t, label) in enumerate(zip(templates, labels, strict=True)):
            if i != o:
                gallery.add(label, t[None, :])
        scores = gallery.scores(w[None, :])[0]
        for label, score in zip(gallery.labels, scores, strict=True):
            (want_genuine if label == labels[o] else want_impostor).append(score)
    np.testing.assert_allclose(sorted(genuine), sorted(want_genuine), atol=1e-6)
    np.testing.assert_allclose(sorted(impostor), sorted(want_impostor), atol=1e-6)


def test_rates_at_a_fixed_threshold_count_ties_as_accepted() -> None:
    genuine = [0.9, 0.8, 0.5, 0.4]
    impostor = [0.1, 0.2, 0.5, 0.6, 0.3, 0.0, 0.7, 0.2, 0.1, 0.4]
    # impostors >= 0.5: 0.5, 0.6, 0.7 → 3 of 10; genuine < 0.5: 0.4 → 1 of 4
    assert metrics.rates_at_threshold(genuine, impostor, 0.5) == (0.3, 0.25)
    assert metrics.rates_at_threshold(genuine, impostor, 0.95) == (0.0, 1.0)
    assert metrics.rates_at_threshold(genuine, impostor, -1.0) == (1.0, 0.0)


def test_rates_without_trials_are_none() -> None:
    assert metrics.rates_at_threshold([], [0.2, 0.9], 0.5) == (0.5, None)
    assert metrics.rates_at_threshold([0.7], [], 0.5) == (None, 0.0)


def test_a_threshold_calibrated_on_the_same_impostors_meets_its_target() -> None:
    rng = np.random.default_rng(3)
    impostor = rng.normal(0.2, 0.1, 5000)
    genuine = rng.normal(0.7, 0.1, 500)
    for target in (0.1, 0.01, 0.001):
        fmr, _ = metrics.rates_at_threshold(genuine, impostor, threshold_at_fmr(impostor, target))
        assert fmr is not None and target / 2 < fmr <= target
        shifted, _ = metrics.rates_at_threshold(
            genuine, impostor + 0.1, threshold_at_fmr(impostor, target)
        )
        assert shifted is not None and shifted > 3 * target  # same threshold, shifted scores

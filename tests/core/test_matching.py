"""Gallery scores, per-label aggregation and thresholds (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgesiam.core.matching import Gallery, Thresholds, fmr_label, threshold_for
from edgesiam.errors import ConfigError, DataError


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def naive_scores(templates: dict[str, np.ndarray], queries: np.ndarray, mean: bool) -> np.ndarray:
    labels = sorted(templates)
    out = np.zeros((queries.shape[0], len(labels)))
    for b, q in enumerate(queries):
        for j, label in enumerate(labels):
            t = unit(templates[label].astype(np.float64))
            if mean:
                out[b, j] = float(q @ unit(t.mean(axis=0)))
            else:
                out[b, j] = max(float(q @ row) for row in t)
    return out


@st.composite
def galleries(draw: st.DrawFn) -> tuple[int, dict[str, np.ndarray], np.ndarray]:
    dim = draw(st.integers(1, 8))
    n_labels = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    templates = {}
    for i in range(n_labels):
        k = draw(st.integers(1, 5))
        templates[f"l{draw(st.integers(0, 50))}_{i}"] = rng.standard_normal((k, dim)) + 0.01
    queries = unit(rng.standard_normal((draw(st.integers(1, 4)), dim)) + 0.01)
    return dim, templates, queries


@settings(max_examples=60, deadline=None)
@given(galleries(), st.sampled_from(["max", "mean"]), st.randoms(use_true_random=False))
def test_scores_equal_a_naive_loop_whatever_the_enrolment_order(
    case: tuple[int, dict[str, np.ndarray], np.ndarray], aggregate: str, rnd: object
) -> None:
    dim, templates, queries = case
    if aggregate == "mean":  # a label whose templates cancel out has no direction
        assume(all(np.linalg.norm(unit(t).mean(axis=0)) > 0.1 for t in templates.values()))
    gallery = Gallery(dim, aggregate=aggregate)  # type: ignore[arg-type]
    order = list(templates)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    for label in order:  # split each label over two add() calls
        t = templates[label]
        gallery.add(label, t[:1])
        if len(t) > 1:
            gallery.add(label, t[1:])
    assert gallery.labels == sorted(templates)
    got = gallery.scores(queries)
    assert got.dtype == np.float32 and got.shape == (len(queries), len(templates))
    np.testing.assert_allclose(
        got, naive_scores(templates, queries, aggregate == "mean"), atol=1e-5
    )
    rows = [(label, row) for label, t in templates.items() for row in t]
    bulk = Gallery.from_templates(
        np.array([r for _, r in rows]),
        [label for label, _ in rows],
        aggregate,
        dim=dim,  # type: ignore[arg-type]
    )
    np.testing.assert_allclose(bulk.scores(queries), got, atol=1e-6)
    idx, best = gallery.best(queries)
    np.testing.assert_array_equal(idx, np.argmax(got, axis=1))
    np.testing.assert_allclose(best, got.max(axis=1))


def test_add_remove_counts_and_templates() -> None:
    g = Gallery(3)
    g.add("bob", [[0, 0, 2.0], [0, 3.0, 0]])
    g.add("alice", [1.0, 0, 0])
    assert g.labels == ["alice", "bob"] and len(g) == 3 and "bob" in g
    assert g.counts() == {"alice": 1, "bob": 2}
    np.testing.assert_allclose(g.templates("bob"), [[0, 0, 1], [0, 1, 0]])
    assert g.template_labels == ["alice", "bob", "bob"]
    np.testing.assert_allclose(g.scores([0, 0.6, 0.8]), [[0.0, 0.8]], atol=1e-6)
    np.testing.assert_allclose(g.scores(np.array([[1.0, 0, 0]])), [[1.0, 0.0]])
    assert g.remove("bob") == 2 and g.remove("bob") == 0
    assert g.labels == ["alice"] and g.counts() == {"alice": 1}
    g.clear()
    assert len(g) == 0


def test_from_templates_checks_its_input() -> None:
    with pytest.raises(DataError, match="3 templates but 2 labels"):
        Gallery.from_templates(np.ones((3, 2)), ["a", "b"])
    assert len(Gallery.from_templates(np.zeros((0, 4)), [])) == 0


def test_mean_aggregation_uses_the_normalised_mean_template() -> None:
    g = Gallery(2, aggregate="mean")
    g.add("a", [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(g.scores([1.0, 0.0]), [[np.sqrt(0.5)]], atol=1e-6)


def test_empty_gallery_never_matches() -> None:
    g = Gallery(4)
    assert g.scores(np.ones((2, 4), np.float32)).shape == (2, 0)
    idx, score = g.best(np.ones((2, 4), np.float32))
    assert idx.tolist() == [-1, -1] and np.all(np.isneginf(score))


@pytest.mark.parametrize(
    ("embeddings", "match"),
    [
        (np.zeros((1, 3)), "all zeros"),
        (np.array([[np.nan, 1, 1]]), "NaN"),
        (np.ones((2, 4)), r"shape \(k, 3\)"),
        (np.ones((0, 3)), r"shape \(k, 3\)"),
        (np.array([["a", "b", "c"]]), "real numbers"),
    ],
)
def test_bad_templates_are_refused(embeddings: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        Gallery(3).add("x", embeddings)


def test_bad_queries_and_settings() -> None:
    g = Gallery(3)
    g.add("a", [1.0, 0, 0])
    with pytest.raises(DataError, match=r"\(B, 3\)"):
        g.scores(np.ones((1, 4)))
    with pytest.raises(ConfigError):
        Gallery(0)
    with pytest.raises(ConfigError):
        Gallery(3, aggregate="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        g.add("", [1.0, 0, 0])


def test_scores_for_ten_thousand_templates_are_each_labels_best_template() -> None:
    """Ten thousand templates (their cost is in `edgesiam bench`, not here): each label's score
    is its best template's cosine, computed in one pass."""
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((10_000, 64))).astype(np.float32)
    names = [f"label{i % 2000:04d}" for i in range(10_000)]
    g = Gallery.from_templates(x, names)
    assert len(g.labels) == 2000 and set(g.counts().values()) == {5}
    q = unit(rng.standard_normal((1, 64))).astype(np.float32)
    scores = g.scores(q)[0]
    cosines = (x @ q[0]).reshape(5, 2000)  # template i belongs to label i % 2000
    expected = dict(zip([f"label{i:04d}" for i in range(2000)], cosines.max(axis=0), strict=True))
    got = dict(zip(g.labels, scores, strict=True))
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), atol=1e-5)


def test_threshold_for_picks_the_calibrated_rate() -> None:
    table = {"0.01": 0.5, "0.001": 0.6, "0.0001": 0.7}
    assert threshold_for(table, 1e-3) == 0.6
    assert threshold_for(table, 0.0001) == 0.7
    assert threshold_for({"1e-2": 0.5}, 0.01) == 0.5
    with pytest.raises(ConfigError, match=r"0\.00001.*it has: 0\.01, 0\.001, 0\.0001"):
        threshold_for(table, 1e-5)
    for bad in (0.0, 1.0, -0.1, float("nan"), True):
        with pytest.raises(ConfigError, match="target_fmr"):
            threshold_for(table, bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="finite"):
        threshold_for({"0.001": float("nan")}, 1e-3)
    assert fmr_label(1e-3) == "0.001"


def test_thresholds_default_overrides_and_vector() -> None:
    t = Thresholds(0.6, {"alice": 0.7})
    assert t.for_label("alice") == 0.7 and t.for_label("bob") == 0.6
    np.testing.assert_allclose(t.vector(["bob", "alice"]), [0.6, 0.7])
    assert Thresholds.from_manifest({"0.001": 0.55}).default == 0.55
    assert Thresholds.from_manifest({"0.01": 0.5}, target_fmr=0.01).default == 0.5
    assert Thresholds.from_manifest({}, threshold=0.42, per_label={"x": 0.9}).for_label("x") == 0.9
    with pytest.raises(ConfigError, match="finite"):
        Thresholds(float("inf"))
    with pytest.raises(ConfigError, match="'alice'"):
        Thresholds(0.5, {"alice": float("nan")})

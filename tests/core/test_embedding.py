"""Embedding arithmetic: L2 normalisation and the recording embedding (docs/ARCHITECTURE.md, contract 3)."""

from __future__ import annotations

import numpy as np
import pytest

from edgesiam.core.embedding import l2_normalize, recording_embedding
from edgesiam.errors import DataError


def test_l2_normalize_gives_unit_rows() -> None:
    x = np.random.default_rng(0).standard_normal((5, 8)) * 30
    normalised = l2_normalize(x)
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(normalised * np.linalg.norm(x, axis=1, keepdims=True), x, rtol=1e-5)


def test_l2_normalize_along_another_axis() -> None:
    x = np.array([[3.0, 1.0], [4.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(x, axis=0), [[0.6, 1.0], [0.8, 0.0]])


def test_l2_normalize_keeps_a_zero_vector_zero() -> None:
    normalised = l2_normalize(np.zeros((2, 4)))
    np.testing.assert_array_equal(normalised, 0.0)


def test_recording_embedding_weights_windows_equally() -> None:
    windows = np.array([[10.0, 0.0], [0.0, 0.1]])
    np.testing.assert_allclose(
        recording_embedding(windows), [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-6
    )


def test_recording_embedding_is_unit_norm_float32() -> None:
    embedding = recording_embedding(np.random.default_rng(1).standard_normal((7, 16)))
    assert embedding.shape == (16,)
    assert embedding.dtype == np.float32
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-6)


def test_single_window_recording_is_its_normalised_window() -> None:
    window = np.array([[1.0, 2.0, 2.0]])
    np.testing.assert_allclose(recording_embedding(window), [1 / 3, 2 / 3, 2 / 3], rtol=1e-6)


def test_recording_embedding_rejects_no_windows_and_wrong_rank() -> None:
    with pytest.raises(DataError, match="at least one window"):
        recording_embedding(np.zeros((0, 8)))
    with pytest.raises(DataError, match=r"\(k, D\)"):
        recording_embedding(np.zeros(8))

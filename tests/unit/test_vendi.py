"""Vendi score: limits (1 for copies, N for orthogonal items) and the TF-IDF default."""

from __future__ import annotations

import numpy as np
import pytest

from soar_orl.eval.vendi import (
    char_ngram_tfidf,
    vendi_score,
    vendi_score_from_embeddings,
    vendi_score_from_kernel,
    vendi_score_from_similarity,
)


def test_limits() -> None:
    assert vendi_score_from_kernel(np.ones((5, 5))) == pytest.approx(1.0)
    assert vendi_score_from_kernel(np.eye(5)) == pytest.approx(5.0)
    # Two groups of identical items: two effective items.
    assert vendi_score_from_embeddings(np.array([[1, 0], [2, 0], [0, 1], [0, 3]])) == pytest.approx(2.0)


def test_similarity_function_matches_the_kernel() -> None:
    items = [0, 1, 2, 5]

    def similarity(a: int, b: int) -> float:
        return float(np.exp(-abs(a - b)))

    K = np.array([[similarity(a, b) for b in items] for a in items])
    assert vendi_score_from_similarity(items, similarity) == pytest.approx(vendi_score_from_kernel(K))
    assert 1.0 < vendi_score_from_kernel(K) < 4.0


def test_text_default_ranks_diverse_sets_higher() -> None:
    same = ["What is 2 + 3?"] * 6
    near = [f"What is 2 + {i}?" for i in range(6)]
    varied = [
        "What is 2 + 3?",
        "How many primes are below 20?",
        "Find the area of a circle of radius 4.",
        "Solve x^2 - 5x + 6 = 0.",
        "In how many ways can 5 books be arranged on a shelf?",
        "What is the remainder of 2^10 divided by 7?",
    ]
    scores = [vendi_score(texts) for texts in (same, near, varied)]
    assert scores[0] == pytest.approx(1.0)
    assert scores[0] < scores[1] < scores[2] <= 6.0


def test_tfidf_rows_are_unit_vectors_and_case_insensitive() -> None:
    X = char_ngram_tfidf(["Hello  World", "hello world", "x"], n=3)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0)
    np.testing.assert_allclose(X[0], X[1])
    assert char_ngram_tfidf(["ab"], n=10).shape == (1, 1)  # shorter than n: one n-gram, itself


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        vendi_score_from_kernel(np.ones((2, 3)))
    with pytest.raises(ValueError):
        vendi_score_from_kernel(np.array([[2.0, 0.0], [0.0, 2.0]]))
    with pytest.raises(ValueError):
        vendi_score_from_embeddings(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="empty"):
        char_ngram_tfidf(["fine", "   "])
    with pytest.raises(ValueError):
        char_ngram_tfidf([])

"""Vendi score (Friedman & Dieng 2023): the effective number of distinct items in a set.

With K the N x N similarity matrix (K_ii = 1, positive semi-definite), the score is
exp(-sum_i lambda_i log lambda_i) over the eigenvalues lambda of K / N: 1 when all items are the
same, N when all are orthogonal. The paper uses it to show that grounded rewards keep the
teacher's questions diverse. Any similarity or embedding can be plugged in; the default is a
character n-gram TF-IDF cosine in numpy, so it runs anywhere with no model download (its absolute
values are not comparable with the paper's embedding-based ones; compare runs with each other).

Shapes: N = items, D = embedding dimensions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

Item = TypeVar("Item")


def vendi_score_from_kernel(K_NN: np.ndarray) -> float:
    """Vendi score of a symmetric PSD similarity matrix with unit diagonal."""
    K = np.asarray(K_NN, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise ValueError(f"need a non-empty square matrix, got shape {K.shape}")
    if not np.allclose(np.diag(K), 1.0) or not np.allclose(K, K.T):
        raise ValueError("the similarity matrix must be symmetric with a unit diagonal")
    eigenvalues = np.linalg.eigvalsh(K / K.shape[0])
    eigenvalues = eigenvalues[eigenvalues > 1e-12]  # drop round-off (tiny or slightly negative)
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))


def vendi_score_from_embeddings(X_ND: np.ndarray) -> float:
    """Vendi score with cosine similarity between the rows of X."""
    X = np.asarray(X_ND, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"need an N x D matrix, got shape {X.shape}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("every embedding must be non-zero")
    X = X / norms
    return vendi_score_from_kernel(X @ X.T)


def vendi_score_from_similarity(items: Sequence[Item], similarity: Callable[[Item, Item], float]) -> float:
    """Vendi score with a pairwise similarity (symmetric, 1 for an item with itself)."""
    n = len(items)
    K = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            K[i, j] = K[j, i] = similarity(items[i], items[j])
    return vendi_score_from_kernel(K)


def char_ngram_tfidf(texts: Sequence[str], n: int = 3) -> np.ndarray:
    """TF-IDF vectors (N x vocabulary) of the character n-grams of each text, rows L2-normalised.

    Texts are lower-cased, whitespace is collapsed and a space is added at both ends, so any
    non-empty text has n-grams. IDF is smoothed, log((1 + N) / (1 + df)) + 1, so an n-gram shared
    by every text still counts a little. Dense: meant for the few hundred to few thousand
    questions of a run, not for corpora.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    counts_N = [_ngram_counts(text, n) for text in texts]
    if not counts_N:
        raise ValueError("need at least one text")
    vocabulary = {gram: index for index, gram in enumerate(sorted(set().union(*counts_N)))}
    X = np.zeros((len(texts), len(vocabulary)))
    for row, counts in enumerate(counts_N):
        if not counts:
            raise ValueError(f"text {row} is empty")
        for gram, count in counts.items():
            X[row, vocabulary[gram]] = count
    document_frequency = np.count_nonzero(X, axis=0)
    X *= np.log((1 + len(texts)) / (1 + document_frequency)) + 1
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def vendi_score(
    texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray] = char_ngram_tfidf
) -> float:
    """Vendi score of a set of questions under an embedding (default: character n-gram TF-IDF)."""
    return vendi_score_from_embeddings(embed(texts))


def _ngram_counts(text: str, n: int) -> Counter[str]:
    normalised = " " + re.sub(r"\s+", " ", text.lower()).strip() + " "
    if normalised == "  ":
        return Counter()
    # A text shorter than n is one n-gram: itself.
    return Counter(normalised[i : i + n] for i in range(max(len(normalised) - n + 1, 1)))

"""Unbiased pass@k against brute-force enumeration, and its spread over seeds."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soar_orl.eval.passk import SeedSpread, mean_pass_at_k, pass_at_k, pass_at_k_over_seeds


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (the first c correct) that contain a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


_n_c_k = st.integers(1, 10).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n)))


@given(_n_c_k)
def test_matches_brute_force_enumeration(n_c_k: tuple[int, int, int]) -> None:
    n, c, k = n_c_k
    assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_monotone_in_k_and_in_c(n_c: tuple[int, int]) -> None:
    n, c = n_c
    values = [pass_at_k(n, c, k) for k in range(1, n + 1)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(values))
    if c < n:
        assert all(pass_at_k(n, c, k) <= pass_at_k(n, c + 1, k) + 1e-12 for k in (1, n // 2 or 1, n))


def test_known_values_and_large_n() -> None:
    assert pass_at_k(32, 0, 32) == 0.0
    assert pass_at_k(32, 1, 32) == 1.0
    assert pass_at_k(32, 8, 1) == pytest.approx(0.25)
    # n far beyond what float binomials can hold; compare with exact integer arithmetic.
    exact = 1 - math.comb(2000 - 3, 100) / math.comb(2000, 100)
    assert pass_at_k(2000, 3, 100) == pytest.approx(exact, rel=1e-12)


def test_bad_arguments() -> None:
    for n, c, k in [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)
    with pytest.raises(ValueError):
        mean_pass_at_k([], 4, 1)
    with pytest.raises(ValueError):
        pass_at_k_over_seeds([], 4, [1])


def test_mean_and_spread_over_seeds() -> None:
    result = pass_at_k_over_seeds([[0, 4], [2, 4]], n=4, ks=[1, 4])
    assert result[4] == SeedSpread(mean=0.75, std=pytest.approx(0.5**0.5 / 2), per_seed=(0.5, 1.0))
    assert result[1].per_seed == (0.5, 0.75)
    assert result[1].mean == pytest.approx(0.625)
    assert result[1].std == pytest.approx(0.1767766952966369)  # sample std of (0.5, 0.75)
    assert pass_at_k_over_seeds([[1, 2]], n=4, ks=[2])[2].std == 0.0

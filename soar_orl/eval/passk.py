"""Unbiased pass@k (Chen et al. 2021) and its mean and spread over seeds.

With n samples of which c are correct, the chance that k samples drawn without replacement
contain a correct one is 1 - C(n-c, k) / C(n, k). The binomials themselves overflow floats for
large n (C(1100, 550) > 1e308), so the ratio is computed as the product
prod_{i = n-c+1}^{n} (1 - k / i): every factor lies in [0, 1] and no large number is formed.

Shapes: S = seeds, P = problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from n samples with c correct (1 <= k <= n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(correct_P: Sequence[int], n: int, k: int) -> float:
    """pass@k averaged over problems, each with n samples of which correct_P[p] are correct."""
    if not len(correct_P):
        raise ValueError("need at least one problem")
    return float(np.mean([pass_at_k(n, int(c), k) for c in correct_P]))


@dataclass(frozen=True)
class SeedSpread:
    """A metric over seeds: mean, sample standard deviation (0 for one seed), per-seed values."""

    mean: float
    std: float
    per_seed: tuple[float, ...]

    @classmethod
    def of(cls, per_seed: Sequence[float]) -> SeedSpread:
        if not per_seed:
            raise ValueError("need at least one seed")
        std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
        return cls(float(np.mean(per_seed)), std, tuple(per_seed))


def pass_at_k_over_seeds(
    correct_SP: Sequence[Sequence[int]], n: int, ks: Sequence[int]
) -> dict[int, SeedSpread]:
    """For each k: mean and spread over seeds of the problem-averaged pass@k."""
    result = {}
    for k in ks:
        result[k] = SeedSpread.of([mean_pass_at_k(correct_P, n, k) for correct_P in correct_SP])
    return result

"""The teacher's dataset-level rewards and their RLOO mapping onto OpenRLHF (the student's shaped
answer reward is `student.reward` in config.py).

Shapes: G = number of datasets per outer step (g), N = questions per dataset (n), R = student
runs per dataset (r). The teacher's g*n pairs are split into datasets in sampling order:
X_k = pairs[k*n : (k+1)*n].

How the dataset reward reaches OpenRLHF: the teacher has one fixed prompt, sampled with
n_samples_per_prompt = g*n, and every sample gets the reward of its dataset (r_i = R_k for the
samples i of X_k). OpenRLHF's "rloo" gives sample i the advantage r_i - mean_{j != i} r_j over the
g*n samples, which for a sample of X_k equals

    n (g - 1) / (g n - 1)  x  (R_k - mean_{l != k} R_l),

i.e. the paper's RLOO over the g dataset rewards times a constant (`openrlhf_rloo_scale`). A
constant factor only rescales the step size, so no patch of OpenRLHF's advantage is needed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import numpy as np


class RewardKind(str, enum.Enum):
    """How the teacher is rewarded: the SOAR variants of the paper."""

    GROUNDED = "grounded"  # Grounded-T: student progress on the hard questions Q_R
    INTRINSIC = "intrinsic"  # Intrinsic-T: learnability of the teacher's own questions
    NONE = "none"  # Base-T: the teacher is frozen; no reward is computed and nothing is updated


def grounded_reward(accs_after_R: Sequence[float], acc_baseline: float) -> float:
    """Grounded-T reward of one dataset: mean over its r runs of (acc_after - acc_baseline).

    Both accuracies are greedy accuracies on the same Q_R, the fresh sample of hard train
    questions of this outer step; the baseline is re-measured on each new Q_R.
    """
    accs = _as_vector(accs_after_R, "accs_after_R")
    return float(np.mean(accs - acc_baseline))


def intrinsic_reward(success_rates_N: Sequence[float]) -> float:
    """Intrinsic-T reward of one dataset: mean over its n questions of p (1 - p).

    p is the baseline student's success rate on a teacher question *before* any training on it:
    the fraction of its samples (temperature 1) graded CORRECT against the teacher's own label.
    p (1 - p) is the variance of that binary reward, which is what an RLOO/GRPO step can learn
    from: 0 for questions always or never solved, highest (0.25) at p = 1/2. It needs no hard
    questions and no inner training run, which is why it is the intrinsic baseline.
    """
    p = _as_vector(success_rates_N, "success_rates_N")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"success rates must lie in [0, 1], got {p.tolist()}")
    return float(np.mean(p * (1 - p)))


def per_sample_rewards(rewards_G: Sequence[float], n: int) -> list[float]:
    """Reward of each of the g*n teacher samples: the reward of its dataset, in sample order."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [float(reward) for reward in _as_vector(rewards_G, "rewards_G") for _ in range(n)]


def dataset_rloo_advantages(rewards_G: Sequence[float]) -> np.ndarray:
    """The paper's RLOO advantage of each dataset: R_k - mean of the other g - 1 rewards."""
    rewards = _as_vector(rewards_G, "rewards_G")
    g = len(rewards)
    if g < 2:
        raise ValueError("RLOO needs at least 2 datasets per step")
    return rewards - (rewards.sum() - rewards) / (g - 1)


def openrlhf_rloo_scale(g: int, n: int) -> float:
    """OpenRLHF's per-sample RLOO advantage / the paper's dataset RLOO advantage."""
    if g < 2 or n < 1:
        raise ValueError(f"need g >= 2 and n >= 1, got g={g}, n={n}")
    return n * (g - 1) / (g * n - 1)


def _as_vector(values: Sequence[float], name: str) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"{name} must be finite, got {vector.tolist()}")
    return vector

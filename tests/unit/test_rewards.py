"""Student reward levels, dataset rewards, and the RLOO mapping onto OpenRLHF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from soar_orl.config import RewardLevelsConfig
from soar_orl.tasks.base import Outcome
from soar_orl.teacher.rewards import (
    dataset_rloo_advantages,
    grounded_reward,
    intrinsic_reward,
    openrlhf_rloo_scale,
    per_sample_rewards,
)


def test_reward_levels_follow_the_papers_order() -> None:
    levels = RewardLevelsConfig()
    rewards = [
        levels.reward(o) for o in (Outcome.CORRECT, Outcome.UNVERIFIED, Outcome.WRONG, Outcome.NO_ANSWER)
    ]
    assert rewards == sorted(rewards, reverse=True)
    assert rewards[0] > rewards[-1]
    assert levels.reward(Outcome.CORRECT) == 1.0 and levels.reward(Outcome.NO_ANSWER) == 0.0


@pytest.mark.parametrize(
    "levels",
    [
        {"wrong": 0.5, "unverified": 0.2},  # wrong above unverified
        {"correct": 0.0},  # correct not above no answer
        {"no_answer": 0.3},  # no answer above wrong
    ],
)
def test_reward_levels_out_of_order_are_refused(levels: dict) -> None:
    with pytest.raises(ValueError, match="correct >= unverified >= wrong >= no_answer"):
        RewardLevelsConfig(**levels)


def test_grounded_reward_is_the_mean_gain_over_runs() -> None:
    assert grounded_reward([0.10, 0.20, 0.15, 0.05], acc_baseline=0.10) == pytest.approx(0.025)
    assert grounded_reward([0.0], acc_baseline=0.0) == 0.0


def test_intrinsic_reward_is_mean_learnability() -> None:
    assert intrinsic_reward([0.0, 1.0, 0.5, 0.5]) == pytest.approx(0.125)
    with pytest.raises(ValueError):
        intrinsic_reward([1.5])


@pytest.mark.parametrize("bad", [[], [[0.1]], [float("nan")]])
def test_reward_inputs_are_checked(bad: list) -> None:
    with pytest.raises(ValueError):
        grounded_reward(bad, acc_baseline=0.0)


def test_per_sample_rewards_repeat_each_dataset_reward_in_order() -> None:
    assert per_sample_rewards([0.5, -0.25], n=3) == [0.5, 0.5, 0.5, -0.25, -0.25, -0.25]


def openrlhf_style_leave_one_out(rewards: np.ndarray) -> np.ndarray:
    """OpenRLHF's "rloo" baseline for the samples of one prompt, written out here on purpose."""
    baseline = (rewards.sum() - rewards) / (len(rewards) - 1)
    return rewards - baseline


@given(
    g=st.integers(2, 6),
    n=st.integers(1, 8),
    data=st.data(),
)
def test_openrlhf_rloo_on_per_sample_rewards_equals_dataset_rloo_times_constant(g: int, n: int, data) -> None:
    rewards_G = data.draw(st.lists(st.floats(-1, 1, allow_nan=False), min_size=g, max_size=g))
    per_sample_GN = openrlhf_style_leave_one_out(np.array(per_sample_rewards(rewards_G, n)))
    expected_G = dataset_rloo_advantages(rewards_G) * openrlhf_rloo_scale(g, n)
    np.testing.assert_allclose(per_sample_GN, np.repeat(expected_G, n), atol=1e-12)


def test_dataset_rloo_advantages() -> None:
    np.testing.assert_allclose(dataset_rloo_advantages([1.0, 0.0, 0.0, 0.0]), [1.0, -1 / 3, -1 / 3, -1 / 3])
    with pytest.raises(ValueError):
        dataset_rloo_advantages([1.0])
    assert openrlhf_rloo_scale(4, 64) == pytest.approx(64 * 3 / 255)

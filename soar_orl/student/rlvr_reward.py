"""OpenRLHF reward function for the vanilla RLVR baselines (Hard-Only, Oracle).

OpenRLHF loads this file by path (`--reward.remote_url .../rlvr_reward.py`) inside its vLLM
engine actors and calls `reward_func` per sample. The task and the shaped reward levels come
from environment variables that soar-orl sets on the Ray cluster, so the baseline grades
exactly like the student pool of a SOAR run.
"""

from __future__ import annotations

import os
from functools import cache

TASK_ENV = "SOAR_RLVR_TASK"
LEVELS_ENV = "SOAR_RLVR_REWARD_LEVELS"


@cache
def _grader():
    from soar_orl.config import RewardLevelsConfig
    from soar_orl.tasks import build_task

    return build_task(os.environ[TASK_ENV]), RewardLevelsConfig.model_validate_json(os.environ[LEVELS_ENV])


def reward_func(queries: list[str], prompts: list[str], labels: list[str], **kwargs) -> dict:
    import torch

    from soar_orl.tasks.base import Outcome

    task, levels = _grader()
    # The query is the decoded prompt + response; grade the response alone when the prompt
    # round-trips, else the whole text (its last box is the response's, if it boxed anything).
    responses = [q[len(p) :] if q.startswith(p) else q for q, p in zip(queries, prompts, strict=True)]
    graded = task.grade_many(responses, labels)
    rewards = torch.tensor([levels.reward(g.outcome) for g in graded], dtype=torch.float32)
    correct = torch.tensor([float(g.outcome == Outcome.CORRECT) for g in graded])
    return {"rewards": rewards, "scores": correct, "extra_logs": {"correct": correct}}

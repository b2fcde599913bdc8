"""One RLOO update of a student, from OpenRLHF's pieces: shared by the full fine-tuning student
(student/policy.py, a DeepSpeed engine) and the LoRA students (student/lora_policy.py, adapters on
one base), so that the two differ only in what they train and how they step, never in the
objective.

Both read every setting from the namespace that OpenRLHF's parser makes from the student's flags
(student/flags.py): the KL estimator and coefficient (KL towards the reference enters the reward,
OpenRLHF's default), the advantage estimator and group size of its `RemoteExperienceMaker`, and
the PPO-clip `PolicyLoss` as OpenRLHF's PPO actor builds it (trainer/ray/ppo_actor.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from soar_orl.student.rollout import RolloutBatch, require_device


@dataclass(frozen=True)
class StepStats:
    loss: float
    reward_mean: float
    kl_mean: float


def actor_around(actor_cls, model: torch.nn.Module, temperature: float):
    """OpenRLHF's Actor wrapping an in-memory model, at the rollout temperature. Its constructor
    sets `packing_samples` only when it loads from a path, so we set the (unpacked) default that
    forward() reads."""
    actor = actor_cls(model, temperature=temperature)
    actor.packing_samples = False
    return actor


class RlooObjective:
    """The loss, the KL-shaped rewards and the RLOO advantages of one inner step."""

    def __init__(self, args: Any, strategy: Any, tokenizer: Any) -> None:
        """args: OpenRLHF's namespace of the student's flags; strategy: its DeepSpeed strategy
        (the experience maker reads only `strategy.args`)."""
        from openrlhf.models import PolicyLoss
        from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
        from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController

        if args.algo.kl.use_loss:
            raise ValueError("student.openrlhf_args: algo.kl.use_loss is not supported by the inner students "
                             "(their KL penalty is part of the reward, OpenRLHF's default)")
        self.args = args
        self.loss_fn = PolicyLoss(
            clip_eps_low=args.actor.eps_clip_low_high[0],
            clip_eps_high=args.actor.eps_clip_low_high[1],
            dual_clip=args.actor.dual_clip,
            token_level_loss=args.actor.loss_agg_mode == "token-mean",
            policy_loss_type=args.actor.policy_loss_type,
        )
        self.experience_maker = RemoteExperienceMaker(
            None, None, None, None, FixedKLController(args.algo.kl.init_coef), strategy, tokenizer
        )

    def experience(
        self, batch: RolloutBatch, old_log_probs: torch.Tensor, reference_log_probs: Callable[[], torch.Tensor]
    ) -> tuple[Any, torch.Tensor]:
        """OpenRLHF's Experience of a rollout batch laid out prompt-major (group_size rows per
        prompt) with the advantages of the flags' estimator, and the per-token KL to the reference
        with the flags' estimator (reference_log_probs is called only when the KL coefficient is
        > 0). The KL comes apart because the experience maker drops it once it is in the reward."""
        from openrlhf.models.utils import compute_approx_kl
        from openrlhf.trainer.ppo_utils.experience import Experience

        with torch.no_grad():
            if self.args.algo.kl.init_coef > 0:
                base_log_probs = reference_log_probs()
                kl = compute_approx_kl(old_log_probs, base_log_probs, kl_estimator=self.args.algo.kl.estimator)
                kl = kl * batch.action_mask_BA
            else:
                base_log_probs, kl = None, torch.zeros_like(old_log_probs)
        # OpenRLHF's reward shaping scatters the rewards into the KL tensor: one device for both.
        require_device(batch.sequences_BT.device, kl=kl, rewards=batch.rewards_B, old_log_probs=old_log_probs)
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
        return experience, kl

    def loss(self, log_probs: torch.Tensor, experience, rows: Sequence[int] | slice) -> torch.Tensor:
        """PolicyLoss of the experience's `rows`, whose new log-probs are `log_probs`."""
        return self.loss_fn(
            log_probs, experience.action_log_probs[rows], experience.advantages[rows],
            action_mask=experience.action_mask[rows],
        )[0]

    @staticmethod
    def stats(losses: Sequence[float], batch: RolloutBatch, kl_BA: torch.Tensor, rows: slice) -> StepStats:
        """Mean micro-batch loss, mean raw reward and mean per-token KL of the batch's `rows`."""
        tokens = batch.action_mask_BA[rows].sum().clamp(min=1)
        return StepStats(
            loss=sum(losses) / len(losses),
            reward_mean=batch.rewards_B[rows].mean().item(),
            kl_mean=(kl_BA[rows].sum() / tokens).item(),
        )

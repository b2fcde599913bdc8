"""Rollouts as OpenRLHF tensors: token lists in, padded (B, T) batches out.

OpenRLHF's Actor scores the last A positions of each row as actions, so a batch is laid out as
[left-padded prompt | right-padded response]: every response starts at the same column and the
action mask marks its real tokens. Shapes carry suffixes: B rows, T tokens, A action positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class RolloutBatch:
    sequences_BT: torch.Tensor  # prompt + response token ids
    attention_mask_BT: torch.Tensor  # 1 on real tokens
    action_mask_BA: torch.Tensor  # True on response tokens
    rewards_B: torch.Tensor  # one scalar reward per response

    @property
    def num_actions(self) -> int:
        return self.action_mask_BA.shape[1]

    def rows(self, start: int, stop: int) -> RolloutBatch:
        return RolloutBatch(
            self.sequences_BT[start:stop],
            self.attention_mask_BT[start:stop],
            self.action_mask_BA[start:stop],
            self.rewards_B[start:stop],
        )

    def to(self, device: torch.device | str) -> RolloutBatch:
        """The batch on `device` (the trainer's), every tensor together."""
        return RolloutBatch(*(t.to(device) for t in (
            self.sequences_BT, self.attention_mask_BT, self.action_mask_BA, self.rewards_B
        )))


def require_device(device: torch.device | str, **tensors: torch.Tensor) -> None:
    """Raise if any named tensor is not on `device`. The trainer's tensors must share one device:
    on GPU a CPU tensor fails deep inside a kernel call, or silently runs a 3B model on the CPU."""
    want = torch.device(device)
    wrong = {name: t.device for name, t in tensors.items() if not _same_device(t.device, want)}
    if wrong:
        raise RuntimeError(f"tensors not on the trainer's device {want}: "
                           + ", ".join(f"{name} on {where}" for name, where in wrong.items()))


def _same_device(have: torch.device, want: torch.device) -> bool:
    # `cuda` means the current CUDA device; compare indices only when both name one.
    return have.type == want.type and (have.index is None or want.index is None or have.index == want.index)


def pack_rollouts(
    prompts_B: Sequence[Sequence[int]],
    responses_B: Sequence[Sequence[int]],
    rewards_B: Sequence[float],
    pad_id: int,
) -> RolloutBatch:
    """Pad prompts on the left and responses on the right into one batch.

    An empty response (the engine stopped at once) keeps one padded action column so its row
    still has a shape; its action mask is all False and it contributes nothing to the loss.
    """
    if not (len(prompts_B) == len(responses_B) == len(rewards_B)) or not prompts_B:
        raise ValueError("pack_rollouts needs equally many (>0) prompts, responses and rewards")
    prompt_len = max(len(p) for p in prompts_B)
    action_len = max(1, max(len(r) for r in responses_B))
    rows = len(prompts_B)
    sequences = torch.full((rows, prompt_len + action_len), pad_id, dtype=torch.long)
    attention = torch.zeros((rows, prompt_len + action_len), dtype=torch.long)
    actions = torch.zeros((rows, action_len), dtype=torch.bool)
    for i, (prompt, response) in enumerate(zip(prompts_B, responses_B)):
        start = prompt_len - len(prompt)
        sequences[i, start:prompt_len] = torch.tensor(prompt, dtype=torch.long)
        attention[i, start:prompt_len] = 1
        if response:
            sequences[i, prompt_len : prompt_len + len(response)] = torch.tensor(response, dtype=torch.long)
            attention[i, prompt_len : prompt_len + len(response)] = 1
            actions[i, : len(response)] = True
    return RolloutBatch(sequences, attention, actions, torch.tensor(rewards_B, dtype=torch.float32))

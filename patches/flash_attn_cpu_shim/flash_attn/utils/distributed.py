"""flash_attn.utils.distributed.all_gather in plain torch.distributed (works with gloo)."""

import torch
import torch.distributed as dist


def all_gather(input_: torch.Tensor, process_group) -> torch.Tensor:
    """Concatenate `input_` from every rank of `process_group` along the first axis."""
    world_size = dist.get_world_size(process_group)
    if world_size == 1:
        return input_
    parts = [torch.empty_like(input_) for _ in range(world_size)]
    dist.all_gather(parts, input_.contiguous(), group=process_group)
    return torch.cat(parts, dim=0)

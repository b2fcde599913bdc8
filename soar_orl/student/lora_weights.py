"""A trained LoRA student as data, and its merge into full weights (promotion).

Pure torch, no peft or vLLM: the pool moves `AdapterWeights` between processes and merges the
promoted one into the baseline state dict that every worker then serves and trains on.
Tensor names are peft's saved names (`base_model.model.<module>.lora_A.weight`, adapter name
stripped), the format vLLM and `PeftModel.from_pretrained` read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

StateDict = dict[str, torch.Tensor]

PEFT_PREFIX = "base_model.model."
LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"


@dataclass(frozen=True)
class AdapterWeights:
    rank: int
    alpha: float
    tensors: StateDict  # peft names -> lora_A (r, in) and lora_B (out, r) matrices

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def modules(self) -> list[str]:
        """The adapted Linear modules, by their name in the base model."""
        return sorted(k.removeprefix(PEFT_PREFIX).removesuffix(LORA_A) for k in self.tensors if k.endswith(LORA_A))


def merge_adapter(base: StateDict, adapter: AdapterWeights) -> StateDict:
    """Full weights of base + adapter: W + (alpha / r) * B @ A for every adapted Linear.

    Computed in float64 and cast back, so the merged weights round once. A tensor the base lacks
    or an A without its B is an error: a silently partial merge would promote another model.
    """
    merged = dict(base)
    for module in adapter.modules():
        key = f"{module}.weight"
        if key not in base:
            raise KeyError(f"adapter module {module!r} has no weight {key!r} in the base state dict")
        lora_b = adapter.tensors.get(f"{PEFT_PREFIX}{module}{LORA_B}")
        if lora_b is None:
            raise KeyError(f"adapter module {module!r} has lora_A but no lora_B")
        lora_a = adapter.tensors[f"{PEFT_PREFIX}{module}{LORA_A}"]
        weight = base[key]
        delta = adapter.scale * (lora_b.double() @ lora_a.double())
        merged[key] = (weight.double() + delta.to(weight.device)).to(weight.dtype)
    return merged

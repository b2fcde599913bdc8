"""The LoRA worker's vLLM engine: one base model, many adapters served in the same batch.

vLLM identifies a loaded adapter by its integer id and never re-reads the files of an id it has
cached: an adapter updated under the same id would be served stale. So every update is published
as a new id (and a new folder in shared memory), added to the engine at once (the load is timed
as sync, not as the next rollout), and the adapter it replaces is removed from the engine and the
disk. vLLM's prefix cache keys blocks by adapter id too, so a new id also never reuses KV computed
with the previous weights of the same student.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from soar_orl.student.engine import Generation, RolloutEngine

# vLLM accepts only these values of max_lora_rank (vllm/config/lora.py, MaxLoRARanks in 0.29).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts as max_lora_rank that holds adapters of `rank`."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}")


def lora_llm_kwargs(max_loras: int, rank: int) -> dict:
    """The `vllm.LLM` arguments of an engine that serves `max_loras` adapters of `rank` in one batch."""
    return dict(enable_lora=True, max_loras=max_loras, max_cpu_loras=max_loras, max_lora_rank=vllm_max_lora_rank(rank))


class LoraRolloutEngine(RolloutEngine):
    def __init__(self, *engine_args, **llm_kwargs) -> None:
        """RolloutEngine's arguments; llm_kwargs must enable LoRA (lora_llm_kwargs)."""
        if not llm_kwargs.get("enable_lora"):
            raise ValueError("LoraRolloutEngine needs the vllm.LLM arguments of lora_llm_kwargs")
        super().__init__(*engine_args, **llm_kwargs)
        self._last_id = 0
        self._served: dict[str, object] = {}  # student name -> its current LoRARequest

    def publish(self, student: str, adapter_dir: str | Path):
        """Serve the adapter in `adapter_dir` as `student` from now on; returns its LoRARequest."""
        from vllm.lora.request import LoRARequest

        self._last_id += 1
        request = LoRARequest(f"{student}@{self._last_id}", self._last_id, str(adapter_dir))
        self.llm.llm_engine.add_lora(request)
        self.retire(student)  # the version it replaces
        self._served[student] = request
        return request

    def retire(self, student: str) -> None:
        """Stop serving `student`'s adapter (its slot is reset to the baseline) and delete its folder."""
        old = self._served.pop(student, None)
        if old is not None:
            self.llm.llm_engine.remove_lora(old.lora_int_id)
            shutil.rmtree(old.lora_path, ignore_errors=True)

    def adapter_dir(self, student: str) -> Path:
        """A fresh folder for the next version of `student`'s adapter."""
        return Path(self._sync_dir) / f"{student}-{self._last_id + 1}"

    def generate_for(
        self,
        prompts_B: Sequence[Sequence[int]],
        loras_B: Sequence[object | None],
        n: int,
        temperature: float,
        max_tokens: int,
        seeds_B: Sequence[int | None] | None = None,
    ) -> list[list[Generation]]:
        """Like generate, one vLLM call, each prompt with its own adapter (None: the base) and seed."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        seeds_B = seeds_B if seeds_B is not None else [None] * len(prompts_B)
        params = [SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=s) for s in seeds_B]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts_B], params, use_tqdm=False,
            lora_request=list(loras_B),
        )
        return [[Generation(list(c.token_ids), c.text) for c in out.outputs] for out in outputs]

"""The student worker's colocated vLLM engine: rollouts, greedy evaluation, weight reloads.

The engine is started once per worker and kept for its whole life (engine start-up dominates at
small scale: 15-30 s on CPU); jobs change its weights instead of restarting it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from soar_orl.backend import (
    VLLM_WORKER_EXTENSION,
    Backend,
    sync_weights_to_vllm,
    vllm_engine_kwargs,
    vllm_unsplit_prefill_kwargs,
)


@dataclass(frozen=True)
class Generation:
    token_ids: list[int]
    text: str


class RolloutEngine:
    def __init__(
        self,
        model_dir: str,
        backend: Backend,
        dtype: str,
        max_model_len: int,
        seed: int,
        gpu_memory_utilization: float,
        **llm_kwargs,
    ) -> None:
        """llm_kwargs: further `vllm.LLM` arguments (the LoRA engine's enable_lora, max_loras, ...).
        Every call may batch many seeded requests (rollouts, a sampled Q_R, S LoRA jobs at once),
        so no prompt's prefill is split (vllm_unsplit_prefill_kwargs)."""
        kwargs = (vllm_engine_kwargs(backend, dtype, max_model_len, seed)  # sets vLLM env: before import
                  | vllm_unsplit_prefill_kwargs(backend, max_model_len) | llm_kwargs)
        from vllm import LLM

        if backend == "cuda":
            kwargs.update(gpu_memory_utilization=gpu_memory_utilization, worker_extension_cls=VLLM_WORKER_EXTENSION)
        self.backend = backend
        self.llm = LLM(model=model_dir, **kwargs)
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self._sync_dir = tempfile.mkdtemp(prefix="soar-sync-", dir=shm)

    def generate(
        self,
        prompts_B: Sequence[Sequence[int]],
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int | None = None,
    ) -> list[list[Generation]]:
        """n samples per prompt (temperature 0: greedy, then n must be 1)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts_B], params, use_tqdm=False)
        return [[Generation(list(c.token_ids), c.text) for c in out.outputs] for out in outputs]

    def load_weights(self, model) -> None:
        sync_weights_to_vllm(self.backend, self.llm, model, self._sync_dir)

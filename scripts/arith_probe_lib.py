"""What the exploration scripts share (scripts/arith_transfer_probe.py,
scripts/arith_scratchpad_probe.py, scripts/chain_probe.py): loading a model folder, a training
schedule of their own, and the success of a model per group of problems (per band of sums), by
Hugging Face sampling (no vLLM)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from soar_orl.chat import chat_prompt
from soar_orl.tasks.arith import Band, sample_expression


@dataclass(frozen=True)
class Schedule:
    """An exploration's own training run (a tasks/pretraining.TrainSchedule)."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    min_lr_ratio: float = 0.1
    """Cosine decay from lr to lr * min_lr_ratio."""
    weight_decay: float = 0.01
    seed: int = 0


def load(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return AutoTokenizer.from_pretrained(folder), model


def sampled_success(folder: Path, bands: Sequence[Band], prompt_of: Callable[[str], str],
                    is_right: Callable[[str, str, int], bool], problems: int, samples: int, max_tokens: int,
                    tag: str) -> dict[str, float]:
    """Share of correct samples per band: `problems` fresh sums of each band (drawn from `tag`
    and the band), asked as `prompt_of(question)`, x `samples` at temperature 1; a sample is
    right when `is_right(its text, the question, its value)`."""
    groups = {}
    for band in bands:
        rng = random.Random(f"{tag}:{band.name}")
        groups[band.name] = [sample_expression(band, rng) for _ in range(problems)]
    return group_success(folder, groups, prompt_of, is_right, samples, max_tokens)


@torch.no_grad()
def group_success(folder: Path, groups: dict[str, list[tuple[str, Any]]], prompt_of: Callable[[str], str],
                  is_right: Callable[[str, str, Any], bool], samples: int, max_tokens: int,
                  greedy: bool = False) -> dict[str, float]:
    """Share of correct answers per group of (question, answer) problems: each asked as
    `prompt_of(question)`, `samples` times at temperature 1 (or once, greedily); an answer is
    right when `is_right(its text, the question, the answer)`."""
    tokenizer, model = load(folder)
    model.eval()
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    rates = {}
    for name, problems in groups.items():
        prompts = [chat_prompt(tokenizer, prompt_of(q)) for q, _ in problems]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        draws = 1 if greedy else samples
        sampling = {"do_sample": False} if greedy else {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
        generated = model.generate(
            **batch, **sampling, max_new_tokens=max_tokens, num_return_sequences=draws,
            pad_token_id=tokenizer.pad_token_id,
        )
        texts = tokenizer.batch_decode(generated[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
        asked = [problem for problem in problems for _ in range(draws)]
        right = sum(is_right(text, q, answer) for text, (q, answer) in zip(texts, asked, strict=True))
        rates[name] = right / len(texts)
    return rates

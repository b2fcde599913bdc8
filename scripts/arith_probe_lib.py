"""What the arithmetic world's exploration scripts share (scripts/arith_transfer_probe.py,
scripts/arith_scratchpad_probe.py): loading a model folder, a training schedule of their own, and
the sampled success of a model per band, by Hugging Face sampling (no vLLM)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from soar_orl.chat import chat_prompt
from soar_orl.tasks.arith import Band, sample_expression


@dataclass(frozen=True)
class Schedule:
    """An exploration's own training run (a tasks/arith_model.TrainSchedule)."""

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


@torch.no_grad()
def sampled_success(folder: Path, bands: Sequence[Band], prompt_of: Callable[[str], str],
                    is_right: Callable[[str, str, int], bool], problems: int, samples: int, max_tokens: int,
                    tag: str) -> dict[str, float]:
    """Share of correct samples per band: `problems` fresh sums of each band (drawn from `tag`
    and the band), asked as `prompt_of(question)`, x `samples` at temperature 1; a sample is
    right when `is_right(its text, the question, its value)`."""
    tokenizer, model = load(folder)
    model.eval()
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    rates = {}
    for band in bands:
        rng = random.Random(f"{tag}:{band.name}")
        sums = [sample_expression(band, rng) for _ in range(problems)]
        prompts = [chat_prompt(tokenizer, prompt_of(q)) for q, _ in sums]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        generated = model.generate(
            **batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=max_tokens,
            num_return_sequences=samples, pad_token_id=tokenizer.pad_token_id,
        )
        texts = tokenizer.batch_decode(generated[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
        asked = [problem for problem in sums for _ in range(samples)]
        right = sum(is_right(text, q, value) for text, (q, value) in zip(texts, asked, strict=True))
        rates[band.name] = right / len(texts)
    return rates

"""Fixtures for the real-stack tests: a tiny student that already answers in the math format."""

import random
from pathlib import Path

import pytest


def sft_boxed_digit_model(out_dir: Path, steps: int = 150, seed: int = 0) -> Path:
    """A tiny Llama fine-tuned (plain torch, seconds) to answer any math prompt with
    `\\boxed{d}` for a random digit d: a base student that is right 1 time in 10 on a dataset
    whose answers are all the same digit, so RLOO has signal to learn from."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soar_orl.tasks.math import MathTask
    from soar_orl.tiny_model import make_tiny_llama

    make_tiny_llama(out_dir, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    task = MathTask.__new__(MathTask)  # only student_prompt is used: no verifier process needed
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        texts = []
        for _ in range(16):
            question = f"What is {rng.randint(1, 99)} + {rng.randint(1, 99)}?"
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": task.student_prompt(question)}], tokenize=False, add_generation_prompt=True
            )
            texts.append(prompt + f"\\boxed{{{rng.randint(0, 9)}}}" + tokenizer.eos_token)
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def boxed_digit_model(tmp_path_factory) -> Path:
    return sft_boxed_digit_model(tmp_path_factory.mktemp("boxed_digit"))

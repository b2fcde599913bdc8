"""The one pretraining loop of the built-in worlds' tiny models (tasks/arith_model.py,
tasks/walk_model.py) and of the exploration scripts: AdamW with warm-up and cosine decay on
(prompt, response) chat examples, the loss on the response only, then the model and a record of
what made it saved together."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from soar_orl.chat import chat_prompt
from soar_orl.tiny_model import TinyLlamaSpec, make_tiny_llama

SETTINGS_FILE = "arith_world.json"
"""Written beside the weights: what made them, and how long it took (the name predates the walk
world; the committed artifacts carry it)."""


class TrainSchedule(Protocol):
    """The fields `train_and_save` reads: PretrainSettings and TeacherSettings have them, and so
    may an exploration's own schedule (scripts/arith_probe_lib.py Schedule)."""

    steps: int
    lr: float
    warmup_steps: int
    min_lr_ratio: float
    weight_decay: float
    seed: int


class WorldPretraining(TrainSchedule, Protocol):
    """What `pretrain_world_model` reads besides the schedule (the built-in worlds' settings)."""

    spec: TinyLlamaSpec
    batch_size: int
    teacher_share: float


def pretrain_world_model(
    out_dir: Path,
    settings: WorldPretraining,
    chars: str,
    examples: Callable[[random.Random, int, bool], list[tuple[str, str]]],
    rng: random.Random,
    key: dict[str, Any],
    desc: str,
) -> None:
    """A built-in world's base model: a fresh tiny Llama of `settings.spec` with a tokenizer of
    `chars`, trained by `train_and_save` on batches of `examples(rng, count, teacher)`, a
    `teacher_share` of each batch in the teacher's format. The two kinds run as separate parts: a
    teacher prompt is several times longer than a student one, and mixing them would pad every
    student example to the teacher's length."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    make_tiny_llama(out_dir, settings.spec, chars=chars, seed=settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    n_teacher = round(settings.batch_size * settings.teacher_share)

    def draw(rng: random.Random) -> list[list[tuple[str, str]]]:
        return [examples(rng, settings.batch_size - n_teacher, False), examples(rng, n_teacher, True)]

    train_and_save(out_dir, model, tokenizer, settings, draw, rng, key, desc)


def model_key(world_version: int, settings: dict[str, Any], chars: str, task) -> dict[str, Any]:
    """What a built-in base model's cache hash covers (JSON-ready): the world's code version, the
    settings that made it, its tokenizer's characters and the prompts it was trained on."""
    return {
        "world_version": world_version,
        "settings": settings,
        "chars": chars,
        "teacher_prompt": task.teacher_prompt(),
        "student_prompt": task.student_prompt("{q}"),
    }


def _batch(tokenizer, examples: list[tuple[str, str]]):
    """Right-padded input ids and labels; labels are -100 on the prompt and the padding."""
    import torch

    rows, labels = [], []
    for prompt, response in examples:
        prompt_ids = tokenizer(chat_prompt(tokenizer, prompt), add_special_tokens=False).input_ids
        response_ids = tokenizer(response + tokenizer.eos_token, add_special_tokens=False).input_ids
        rows.append(prompt_ids + response_ids)
        labels.append([-100] * len(prompt_ids) + response_ids)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
    label_ids = torch.tensor([row + [-100] * (width - len(row)) for row in labels])
    return input_ids, label_ids


def train_and_save(
    out_dir: Path,
    model,
    tokenizer,
    settings: TrainSchedule,
    draw: Callable[[random.Random], list[list[tuple[str, str]]]],
    rng: random.Random,
    key: dict[str, Any],
    desc: str,
) -> None:
    """The one pretraining loop: `settings.steps` AdamW steps with warm-up and cosine decay, each
    on the parts `draw(rng)` returns (lists of (prompt, response) run as separate batches, the
    loss the mean over all their response tokens); then the model and its record (`key`, size,
    time, final loss) are saved into `out_dir`."""
    import torch
    from tqdm import tqdm

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, betas=(0.9, 0.98), weight_decay=settings.weight_decay
    )

    def lr_factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / settings.warmup_steps)
        progress = min(1.0, step / settings.steps)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return warmup * (settings.min_lr_ratio + (1 - settings.min_lr_ratio) * cosine)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    torch.manual_seed(settings.seed)
    started, cpu_started, losses = time.monotonic(), time.process_time(), []
    model.train()
    bar = tqdm(range(settings.steps), desc=desc, unit="step")
    for _ in bar:
        parts = [_batch(tokenizer, examples) for examples in draw(rng)]
        # Mean over all response tokens of every part, as if they were one batch.
        n_tokens = sum(int((labels != -100).sum()) for _, labels in parts)
        total = 0.0
        for input_ids, labels in parts:
            # No attention mask: padding is on the right, so the causal mask already hides it.
            logits = model(input_ids=input_ids).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100, reduction="sum"
            ) / n_tokens
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total)
        bar.set_postfix(loss=f"{total:.4f}", refresh=False)
    model.save_pretrained(out_dir)
    record = {
        **key,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.monotonic() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),  # unlike seconds, blind to other load
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
    }
    (out_dir / SETTINGS_FILE).write_text(json.dumps(record, indent=2) + "\n")


def continue_training(
    out_dir: Path,
    base_dir: Path,
    settings: TrainSchedule,
    draw: Callable[[random.Random], list[list[tuple[str, str]]]],
    rng: random.Random,
    key: dict[str, Any],
    desc: str,
) -> None:
    """`train_and_save` from the model in `base_dir` (a fresh AdamW) into `out_dir`: the base
    folder's tokenizer and configs stay, the weights and the record are overwritten."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.copytree(base_dir, out_dir, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    train_and_save(out_dir, model, tokenizer, settings, draw, rng, key, desc)

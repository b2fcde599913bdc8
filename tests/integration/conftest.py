"""Fixtures for the real-stack tests: tiny Llamas fine-tuned in seconds (plain torch) so that
they already speak the formats the pipeline parses."""

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from soar_orl.chat import chat_prompt
from soar_orl.tasks.math import MathTask
from soar_orl.tiny_model import TinyLlamaSpec

TEACHER_INSTRUCTION = "Write one addition problem as <question>...</question> <answer>\\boxed{...}</answer>"
# MathTask's prompt formats need no verifier process: skip __init__, which starts one.
MATH_FORMATS = MathTask.__new__(MathTask)


def sft_tiny_model(
    out_dir: Path, example: Callable[[random.Random], tuple[str, str]], steps: int = 150, seed: int = 0
) -> Path:
    """A tiny Llama trained on (user message, assistant answer) pairs drawn from `example`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soar_orl.tiny_model import make_tiny_llama

    make_tiny_llama(out_dir, TinyLlamaSpec(max_position_embeddings=1024), seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        texts = []
        for _ in range(16):
            user, answer = example(rng)
            prompt = chat_prompt(tokenizer, user)
            texts.append(prompt + answer + tokenizer.eos_token)
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out_dir)
    return out_dir


def boxed_digit_example(rng: random.Random) -> tuple[str, str]:
    """A student that answers any math prompt with `\\boxed{d}`, d a random digit: right 1 time
    in 10 on a dataset whose answers are all the same digit, so RLOO has signal."""
    question = f"What is {rng.randint(1, 99)} + {rng.randint(1, 99)}?"
    return MATH_FORMATS.student_prompt(question), f"\\boxed{{{rng.randint(0, 9)}}}"


def soar_example(rng: random.Random) -> tuple[str, str]:
    """Both roles on small sums: as teacher, write `a + b` problems in the teacher format; as
    student, box the right sum half of the time and a random digit otherwise, so that students
    start neither hopeless nor perfect and their accuracy moves when they train."""
    a, b = rng.randint(1, 4), rng.randint(1, 4)
    if rng.random() < 0.5:
        return TEACHER_INSTRUCTION, f"<question>What is {a} + {b}?</question> <answer>\\boxed{{{a + b}}}</answer>"
    answer = a + b if rng.random() < 0.5 else rng.randint(0, 9)
    return MATH_FORMATS.student_prompt(f"What is {a} + {b}?"), f"\\boxed{{{answer}}}"


def cached_sft_model(example: Callable[[random.Random], tuple[str, str]], steps: int = 150) -> Path:
    """`sft_tiny_model` built once per machine in the soar-orl cache (soar_orl/cache.py), named by
    a hash of the code that makes it and the library versions, so that an unchanged fixture is
    not trained again by every test session (about 2 of CI's minutes on 2 cores)."""
    import inspect

    import torch
    import transformers

    from soar_orl.cache import build_once, cache_root, content_hash
    from soar_orl.tiny_model import make_tiny_llama

    code = [inspect.getsource(f) for f in (sft_tiny_model, example, make_tiny_llama, TinyLlamaSpec, chat_prompt)]
    key = content_hash([*code, steps, torch.__version__, transformers.__version__])
    folder = cache_root() / "test-models" / f"{example.__name__}-{key}"
    return build_once(folder, lambda tmp: sft_tiny_model(tmp, example, steps=steps))


@pytest.fixture(scope="session")
def boxed_digit_model() -> Path:
    return cached_sft_model(boxed_digit_example)


@pytest.fixture(scope="session")
def soar_model() -> Path:
    return cached_sft_model(soar_example, steps=250)


@pytest.fixture
def single_rank_world():
    """For a test that builds DeepSpeed engines in the pytest process (a worker's own world of
    one rank): afterwards the process group is gone and so is DeepSpeed's cached clone of it,
    which would otherwise outlive it and break the next test's engine ("Group ... is not
    registered"). Inside a worker the world lives as long as the process, so this is test-only."""
    yield
    import torch.distributed
    from deepspeed.utils import groups

    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    groups._WORLD_GROUP = None

"""The walk world measured with vLLM: its fail@k hard split, its `builtin:walk/NAME` problem sets,
and `soar pretrain-walk`'s report.

The hard split is made as the arithmetic world's is (eval/arith_hard.py): every walk of the pool
(every start letter, every length from `min_steps` to the world's `max_steps`) is sampled k times
at temperature 1 by the base model, the ones it never gets right survive, and those are split
50/50 by a seeded hash. Cached in `walk-hard-<hash>` beside the base model it was made with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from soar_orl.cache import build_once, cache_root, content_hash
from soar_orl.eval.questions import answer_accuracy
from soar_orl.eval.sampling import generate, start_engine, stop_engine, success_counts
from soar_orl.eval.splits import SPLIT_FILES, SUMMARY_FILE, write_hard_split
from soar_orl.formats import QAPair
from soar_orl.tasks.base import Problem
from soar_orl.tasks.pretraining import SETTINGS_FILE
from soar_orl.tasks.problems import load_problems
from soar_orl.tasks.walk import WalkTask, WalkWorld, parse_question, walk_problems
from soar_orl.tasks.walk_model import WORLD_VERSION, WalkPretrainSettings, base_model_dir

BUILTIN_SETS = ("hard_train", "hard_test", "full_train")
"""`builtin:walk/NAME`: the fail@k split's halves, and every walk of the world but the hard test
split (the Oracle's "full real training set", short walks included)."""
# The teacher's output budget for the report's valid rate (recipes/quickstart.yaml's).
TEACHER_MAX_TOKENS = 80


@dataclass(frozen=True)
class WalkSplitSettings:
    """How the hard split is drawn (all of it enters the cache hash, with the base model's)."""

    min_steps: int = 4
    """Shortest walk in the pool; shorter walks cross at most three noisy letters and are solved
    often (RESULTS.md, "A walk world")."""
    k: int = 64
    """Samples per problem: a problem is hard when all k are wrong (paper: 128)."""
    temperature: float = 1.0
    max_tokens: int = 32
    """Longest sampled answer: `\\boxed{...}` around a 17-letter walk is 25 characters."""
    seed: int = 0
    """Seeds the samples and the 50/50 split."""


def hard_pool(world: WalkWorld, settings: WalkSplitSettings) -> list[Problem]:
    return walk_problems(world, range(settings.min_steps, world.max_steps + 1))


def hard_split_dir(model: WalkPretrainSettings | None = None, settings: WalkSplitSettings | None = None,
                   rebuild: bool = False) -> Path:
    """The cached hard-split folder of the base model made by `model`, built first if needed
    (by an engine of its own, seeded with `settings.seed`)."""
    model, settings = model or WalkPretrainSettings(), settings or WalkSplitSettings()
    model_dir = base_model_dir(model)
    key = {"world_version": WORLD_VERSION, "model": model_dir.name, "settings": asdict(settings)}

    def build(out_dir: Path) -> None:
        task, problems = WalkTask(model.world), hard_pool(model.world, settings)
        llm = start_engine(model_dir, seed=settings.seed)
        try:
            counts = success_counts(llm, task, problems, settings.k, settings.temperature, settings.max_tokens)
        finally:
            stop_engine(llm)
        write_hard_split(out_dir, problems, counts, settings.k, settings.seed, "steps", "lengths", asdict(settings))

    return build_once(cache_root() / f"walk-hard-{content_hash(key)}", build, rebuild=rebuild)


def builtin_problem_set(name: str) -> list[Problem]:
    """The problems of `builtin:walk/NAME` (BUILTIN_SETS), building the split on first use."""
    model = WalkPretrainSettings()
    split_dir = hard_split_dir(model)
    if name == "full_train":
        test_ids = {p.id for p in load_problems(str(split_dir / SPLIT_FILES["hard_test"]))}
        return [p for p in walk_problems(model.world, range(1, model.world.max_steps + 1)) if p.id not in test_ids]
    return load_problems(str(split_dir / SPLIT_FILES[name]))


# ---------------------------------------------------------------------------- `soar pretrain-walk`


def length_success(llm, task: WalkTask, samples: int, max_tokens: int) -> dict[int, float]:
    """Sampled success (temperature 1) per walk length, over every start letter."""
    world = task.world
    problems = walk_problems(world, range(1, world.max_steps + 1))
    counts = success_counts(llm, task, problems, samples, 1.0, max_tokens)
    by_length: dict[int, list[int]] = {}
    for problem in problems:
        by_length.setdefault(problem.metadata["steps"], []).append(counts[problem.id])
    return {steps: sum(c) / (len(c) * samples) for steps, c in by_length.items()}


def teacher_pairs(llm, task: WalkTask, samples: int, max_tokens: int) -> tuple[float, list[QAPair]]:
    """The base model as the teacher at temperature 1: its valid rate and valid pairs."""
    texts = generate(llm, [task.teacher_prompt()], samples, 1.0, max_tokens)[0]
    pairs = [pair for pair in map(task.parse_teacher_output, texts) if isinstance(pair, QAPair)]
    return len(pairs) / samples, pairs


def pretrain_walk(rebuild: bool = False, samples: int = 32, teacher_samples: int = 256) -> int:
    """Pretrain (or load) `builtin:walk`, measure it, build (or load) its hard split, print all."""
    model = WalkPretrainSettings()
    model_dir = base_model_dir(model, rebuild=rebuild)
    record = json.loads((model_dir / SETTINGS_FILE).read_text())
    world = model.world
    print(f"base model  {model_dir}\n"
          f"            {record['parameters'] / 1e6:.2f}M parameters, pretrained in {record['seconds']:.0f} s "
          f"({record['cpu_seconds']:.0f} s CPU), final loss {record['final_loss']:.4f}\n"
          f"            world: {world.noisy_letters} noisy letters ({''.join(sorted(world.noise()))}) stepped "
          f"right {world.right_share:.0%} of the time, walks of 1 to {world.max_steps} steps")
    split_dir = hard_split_dir(model, rebuild=rebuild)
    task = WalkTask(world)
    llm = start_engine(model_dir)
    try:
        success = length_success(llm, task, samples, WalkSplitSettings().max_tokens)
        valid, pairs = teacher_pairs(llm, task, teacher_samples, TEACHER_MAX_TOKENS)
    finally:
        stop_engine(llm)
    print(f"\nsampled success per walk length (26 starts x {samples} samples, temperature 1):")
    print("  " + "  ".join(f"{steps}: {rate:.1%}" for steps, rate in success.items()))
    lengths = [parse_question(p.question)[1] for p in pairs if parse_question(p.question)]
    short = [p for p in pairs if (q := parse_question(p.question)) and q[1] <= 2]
    print(f"\nteacher at temperature 1 ({teacher_samples} samples, at most {TEACHER_MAX_TOKENS} tokens): "
          f"{valid:.1%} valid pairs, {answer_accuracy(task, pairs):.1%} of them right; "
          f"{len(short)} of {len(lengths)} well-formed questions are 1-2 step walks"
          + (f", {answer_accuracy(task, short):.0%} of those right" if short else ""))
    summary = json.loads((split_dir / SUMMARY_FILE).read_text())
    print(f"\nhard split  {split_dir}\n"
          f"            fail@{summary['settings']['k']} at temperature {summary['settings']['temperature']}: "
          f"{summary['train']} train / {summary['test']} test")
    for steps, row in summary["lengths"].items():
        print(f"  {steps:>2} steps: pool {row['pool']:>3}, mean success {row['mean_success']:.1%}, 0/k: {row['hard']}")
    return 0

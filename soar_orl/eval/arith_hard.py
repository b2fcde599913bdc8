"""The arithmetic world measured with vLLM: accuracy per band, the teacher's valid rate, and the
fail@k hard split.

The hard split is made exactly as for MATH (eval/splits.py): every problem of a pool is sampled
k times at temperature 1 by the base model, the ones it never solves survive, and those are split
50/50 by a seeded hash. The pool is drawn from the hard bands, the edge bands the base model
half-learned; the fail@k filter then keeps what it really cannot do. Files are the problem files
of tasks/problems.py (rows `id, problem, answer, band`), cached in `arith-hard-<hash>` beside the
base model they were made with.

It is evaluation, not a task: it builds the world's base model (tasks/arith_model.py) and
measures it with the evaluation engines (eval/sampling.py). Unlike `soar filter` (eval/filter.py)
it samples in one process, without shards: the pool is small and the split is cached.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from soar_orl.cache import build_once, cache_root, content_hash
from soar_orl.eval.questions import answer_accuracy
from soar_orl.eval.sampling import generate, start_engine, stop_engine, success_counts
from soar_orl.eval.splits import SPLIT_FILES, SUMMARY_FILE, write_hard_split
from soar_orl.formats import QAPair
from soar_orl.tasks.arith import ArithTask, Band, band_problems, parse_sum
from soar_orl.tasks.arith_model import (
    WORLD_VERSION,
    WORLDS,
    PretrainSettings,
    base_model_dir,
    world_task,
)
from soar_orl.tasks.base import Problem
from soar_orl.tasks.pretraining import SETTINGS_FILE
from soar_orl.tasks.problems import load_problems

# The edge bands the base model solves least (tasks/arith_model.py EDGE_BANDS); 3+1 and 1+3 stay
# out of the pool, the nearest stepping stones.
HARD_BANDS = (Band((3, 2)), Band((2, 3)), Band((3, 3)))
# Bands the report measures besides the pretrained ones: a few the base model never saw.
UNSEEN_BANDS = (Band((4, 1)), Band((4, 2)), Band((1, 1, 1)), Band((2, 2, 2)))
# The teacher's output budget the valid rate is measured with (recipes/quickstart_arith.yaml's).
TEACHER_MAX_TOKENS = 64
# The accuracy report draws its problems with this seed; the hard pool uses HardSplitSettings.seed.
REPORT_SEED = 1


@dataclass(frozen=True)
class HardSplitSettings:
    """How the hard split is drawn (all of it enters the cache hash, with the base model's)."""

    bands: tuple[Band, ...] = HARD_BANDS
    pool_per_band: int = 256
    """Problems drawn per band before the filter (duplicates removed)."""
    k: int = 64
    """Samples per problem: a problem is hard when all k are wrong (paper: 128)."""
    temperature: float = 1.0
    max_tokens: int = 16
    """Longest sampled answer; `\\boxed{-12345}` is 14 characters."""
    seed: int = 0
    """Seeds the pool, the samples and the 50/50 split."""


EDGE_SPLIT = HardSplitSettings(bands=(Band((3, 2)),), pool_per_band=2048)
"""A hard split just past the edge of competence: 3+2-digit sums (a band the base model solves
about 6% of the time per sample) that it solved 0/64, beside sums of the same band it sometimes
solves. On it, true-labelled carrying sums of the band raise the student's success on the hard
problems and wrong labels do not (RESULTS.md, issue 18 rung 2); on the default split, mostly
2+3 and 3+3 sums far beyond the base model, no dataset does."""
# `builtin:WORLD/NAME` problem sets (WORLD: a key of tasks/arith_model.py WORLDS, whose base
# model the split is filtered with): NAME -> (split settings, which part).
BUILTIN_SETS = {
    "hard_train": (HardSplitSettings(), "hard_train"),
    "hard_test": (HardSplitSettings(), "hard_test"),
    "full_train": (HardSplitSettings(), "full_train"),
    "edge_train": (EDGE_SPLIT, "hard_train"),
    "edge_test": (EDGE_SPLIT, "hard_test"),
    "edge_full_train": (EDGE_SPLIT, "full_train"),
}


# ---------------------------------------------------------------------------- measures


def band_accuracy(
    llm, task: ArithTask, bands: Sequence[Band], count: int, max_tokens: int = 16
) -> dict[str, float]:
    """Greedy accuracy on `count` fresh problems of each band."""
    accuracy = {}
    for band in bands:
        problems = band_problems(band, count, REPORT_SEED)
        counts = success_counts(llm, task, problems, 1, 0.0, max_tokens)
        accuracy[band.name] = sum(counts.values()) / count
    return accuracy


@dataclass(frozen=True)
class TeacherStats:
    """A teacher at temperature 1: share of parseable pairs, share of pairs whose question
    is a well-formed expression with the right answer, and the sizes and bands it writes."""

    samples: int
    valid_rate: float
    correct_rate: float
    sizes: dict[int, int]  # total operand digits of well-formed questions -> count
    examples: tuple[str, ...]
    bands: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Band name (`3,2`) of well-formed questions -> (pairs written, pairs with the right answer)."""


def band_counts(task: ArithTask, pairs: Sequence[QAPair]) -> dict[str, tuple[int, int]]:
    """(written, right) per band of the pairs whose question is a plain sum, bands sorted by
    operand count, then size, then digits."""
    counts: dict[tuple[int, ...], list[int]] = {}
    for pair in pairs:
        operands = parse_sum(pair.question)
        if operands is None:
            continue
        entry = counts.setdefault(tuple(map(len, operands)), [0, 0])
        entry[0] += 1
        entry[1] += answer_accuracy(task, [pair]) == 1.0  # graded as answer_accuracy grades
    order = sorted(counts, key=lambda d: (len(d), sum(d), d))
    return {",".join(map(str, d)): (counts[d][0], counts[d][1]) for d in order}


def teacher_stats(llm, task: ArithTask, samples: int, max_tokens: int) -> TeacherStats:
    texts = generate(llm, [task.teacher_prompt()], samples, 1.0, max_tokens)[0]
    pairs = [pair for pair in map(task.parse_teacher_output, texts) if isinstance(pair, QAPair)]
    bands = band_counts(task, pairs)
    sizes: dict[int, int] = {}
    for band, (written, _) in bands.items():
        size = sum(map(int, band.split(",")))
        sizes[size] = sizes.get(size, 0) + written
    correct = sum(right for _, right in bands.values())  # only a plain sum has a true answer
    return TeacherStats(
        samples, len(pairs) / samples, correct / samples, dict(sorted(sizes.items())), tuple(texts[:5]), bands
    )


# ---------------------------------------------------------------------------- the hard split


def hard_pool(settings: HardSplitSettings) -> list[Problem]:
    """The problems the fail@k filter runs over: `pool_per_band` per band, duplicates removed."""
    pool: dict[str, Problem] = {}
    for band in settings.bands:
        for problem in band_problems(band, settings.pool_per_band, settings.seed):
            pool.setdefault(problem.problem, problem)  # the same expression twice is one problem
    return list(pool.values())


def full_train_problems(
    settings: HardSplitSettings | None = None, model: PretrainSettings | None = None
) -> list[Problem]:
    """The world's "full real training set" (meta.mode=oracle): the whole pool, solved or not,
    except the hard test split, as MATH's train split holds everything but the test problems."""
    settings = settings or HardSplitSettings()
    test_file = hard_split_dir(model, settings) / SPLIT_FILES["hard_test"]
    test_ids = {p.id for p in load_problems(str(test_file))}
    return [p for p in hard_pool(settings) if p.id not in test_ids]


def builtin_problem_set(world: str, name: str) -> list[Problem]:
    """The problems of `builtin:WORLD/NAME` (BUILTIN_SETS), building the split on first use."""
    settings, part = BUILTIN_SETS[name]
    model = WORLDS[world]
    if part == "full_train":
        return full_train_problems(settings, model)
    return load_problems(str(hard_split_dir(model, settings) / SPLIT_FILES[part]))


def build_hard_split(out_dir: Path, llm, task: ArithTask, settings: HardSplitSettings) -> None:
    """Sample the pool, keep the 0/k problems, split them 50/50, write the JSONL files."""
    problems = hard_pool(settings)
    counts = success_counts(llm, task, problems, settings.k, settings.temperature, settings.max_tokens)
    write_hard_split(out_dir, problems, counts, settings.k, settings.seed, "band", "bands", asdict(settings))


def hard_split_dir(
    model: PretrainSettings | None = None, settings: HardSplitSettings | None = None, rebuild: bool = False
) -> Path:
    """The cached hard-split folder of the base model made by `model`, built first if needed.

    The build starts its own engine seeded with `settings.seed`: sharing an engine that has
    already sampled would make the split depend on what was sampled before.
    """
    settings, model = settings or HardSplitSettings(), model or PretrainSettings()
    model_dir = base_model_dir(model)
    key = {"world_version": WORLD_VERSION, "model": model_dir.name, "settings": asdict(settings)}

    def build(out_dir: Path) -> None:
        llm = start_engine(model_dir, seed=settings.seed)
        try:
            build_hard_split(out_dir, llm, world_task(model), settings)
        finally:
            stop_engine(llm)

    return build_once(cache_root() / f"arith-hard-{content_hash(key)}", build, rebuild=rebuild)


# ---------------------------------------------------------------------------- `soar pretrain-arith`


def pretrain_arith(
    world: str = "arith", rebuild: bool = False, report_problems: int = 200, teacher_samples: int = 256
) -> int:
    """Pretrain (or load) the base model of `world` (WORLDS), measure it, build (or load) its
    hard split, print all."""
    pretrained = WORLDS[world]
    model_dir = base_model_dir(pretrained, rebuild=rebuild)
    record = json.loads((model_dir / SETTINGS_FILE).read_text())
    print(
        f"base model  {model_dir}\n"
        f"            {record['parameters'] / 1e6:.2f}M parameters, {len(record['chars'])} characters, "
        f"pretrained in {record['seconds']:.0f} s ({record['cpu_seconds']:.0f} s CPU), "
        f"final loss {record['final_loss']:.4f}"
    )
    split_dir = hard_split_dir(pretrained, rebuild=rebuild)
    llm = start_engine(model_dir)
    task, hard = world_task(pretrained), HardSplitSettings().bands
    bands = sorted(
        {*pretrained.easy_bands, *pretrained.edge_bands, *UNSEEN_BANDS},
        key=lambda b: (len(b.digits), b.size, b.digits),
    )
    accuracy = band_accuracy(llm, task, bands, report_problems)
    print(
        f"\ngreedy accuracy on {report_problems} fresh problems per band (easy: pretrained; edge: pretrained "
        "a little; hard: edge band the hard split is drawn from; unseen: never pretrained)"
    )
    print(f"  {'band':<8} {'size':>4}  {'role':<8} accuracy")
    for band in bands:
        role = (
            "easy" if band in pretrained.easy_bands
            else "hard" if band in hard
            else "edge" if band in pretrained.edge_bands
            else "unseen"
        )
        print(f"  {band.name:<8} {band.size:>4}  {role:<8} {accuracy[band.name]:.1%}")
    stats = teacher_stats(llm, task, teacher_samples, TEACHER_MAX_TOKENS)
    print(
        f"\nteacher at temperature 1 ({stats.samples} samples, at most {TEACHER_MAX_TOKENS} tokens): "
        f"{stats.valid_rate:.1%} valid pairs, {stats.correct_rate:.1%} with a correct answer\n"
        f"  question sizes (total operand digits: count): {stats.sizes}\n"
        f"  e.g. {stats.examples[0]}"
    )
    stop_engine(llm)
    summary = json.loads((split_dir / SUMMARY_FILE).read_text())
    settings = summary["settings"]
    print(
        f"\nhard split  {split_dir}\n"
        f"            fail@{settings['k']} at temperature {settings['temperature']}: "
        f"{summary['train']} train / {summary['test']} test"
    )
    for name, band in summary["bands"].items():
        print(
            f"  {name:<8} pool {band['pool']:>4}, mean success {band['mean_success']:.1%}, "
            f"0/k: {band['hard']}"
        )
    return 0

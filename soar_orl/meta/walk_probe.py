"""The walk world's probe datasets (`soar probe-datasets RECIPE --out DIR`, then `soar probe`).

Five datasets of meta.n (question, answer) rows, the candidates an ideal teacher could write
(tasks/walk.py says why short walks through noisy letters should be the stepping stones):
- `hard_train`: real hard train walks (0/k for the base model) with their true walks;
- `stepping_stones`: the shortest walks that cross a noisy letter (1 step from each noisy letter,
  then 2 steps crossing one, then longer), true walks;
- `easy`: the shortest walks that cross no noisy letter, true walks (the base model knows them);
- `teacher_samples`: the base teacher's own valid pairs, sampled with the task's teacher prompt at
  the recipe's teacher temperature and token budget, labels as written;
- `stones_wrong_labels`: the stepping stones with the wrong walk the base model writes most:
  from the first noisy letter on, the walk goes on from that letter's first wrong successor.
The base student's sampled success on every dataset's questions (MEASURE_SAMPLES at the student's
temperature) and the share of right labels go into `manifest.json`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from soar_orl.config import SoarConfig
from soar_orl.formats import QAPair
from soar_orl.meta.probe import write_dataset
from soar_orl.tasks.base import Problem
from soar_orl.tasks.walk import WalkWorld, parse_question, walk_problems

MEASURE_SAMPLES = 32
MANIFEST = "manifest.json"


def shortest_walks(world: WalkWorld, count: int, noisy: bool, exclude: set[str]) -> list[Problem]:
    """The `count` shortest walks that cross a noisy letter (`noisy`) or none, by length then start
    letter, none of them in `exclude`."""
    chosen: list[Problem] = []
    for problem in walk_problems(world, range(1, world.max_steps + 1)):
        if (problem.metadata["noisy"] > 0) == noisy and problem.problem not in exclude:
            chosen.append(problem)
        if len(chosen) == count:
            return chosen
    raise ValueError(f"the world holds fewer than {count} {'noisy' if noisy else 'clean'} walks outside the hard split")


def wrong_walk(world: WalkWorld, start: str, steps: int) -> str:
    """The walk with its first noisy step taken to that letter's first wrong successor (and the
    true successor after it): the base model's most common wrong answer to a stepping stone."""
    step, noise, letters = world.successor(), world.noise(), [start]
    wrong = False
    for _ in range(steps):
        here = letters[-1]
        letters.append(noise[here][0] if here in noise and not wrong else step[here])
        wrong = wrong or here in noise
    return "".join(letters)


def write_probe_datasets(cfg: SoarConfig, out_dir: Path) -> str:
    """Sample the base teacher, measure the base student on every dataset, write the five
    datasets and the manifest; returns a summary."""
    from soar_orl.eval.sampling import generate, start_engine, stop_engine, success_counts
    from soar_orl.resolve import resolve_model, resolve_problems
    from soar_orl.tasks import build_task

    n, task = cfg.meta.n, build_task(cfg.data.task)
    world = task.world
    hard_train = resolve_problems(cfg.data.hard_train)
    hard = {p.problem for p in [*hard_train, *resolve_problems(cfg.data.hard_test)]}
    stones = shortest_walks(world, n, noisy=True, exclude=hard)
    rng = random.Random(f"{cfg.run.seed}/probe-datasets")
    datasets: dict[str, Sequence[QAPair]] = {
        "hard_train": [QAPair(p.problem, p.answer) for p in rng.sample(hard_train, n)],
        "stepping_stones": [QAPair(p.problem, p.answer) for p in stones],
        "easy": [QAPair(p.problem, p.answer) for p in shortest_walks(world, n, noisy=False, exclude=hard)],
        "stones_wrong_labels": [QAPair(p.problem, wrong_walk(world, *parse_question(p.problem))) for p in stones],
    }
    llm = start_engine(resolve_model(cfg.model.student), cfg.model.dtype, cfg.model.max_model_len, seed=cfg.run.seed)
    try:
        texts = generate(llm, [task.teacher_prompt()], 8 * n, cfg.teacher.temperature, cfg.teacher.max_new_tokens)[0]
        teacher = [pair for pair in map(task.parse_teacher_output, texts) if isinstance(pair, QAPair)][:n]
        if len(teacher) < n:
            raise RuntimeError(f"the base teacher wrote {len(teacher)} valid pairs in {len(texts)} samples, {n} needed")
        datasets["teacher_samples"] = teacher
        success = {}
        for name, pairs in datasets.items():
            asked = [Problem(f"{name}#{i}", p.question, task.reference_answer(p.question) or p.answer)
                     for i, p in enumerate(pairs)]
            counts = success_counts(llm, task, asked, MEASURE_SAMPLES, cfg.student.temperature,
                                    cfg.student.max_new_tokens)
            success[name] = sum(counts.values()) / (len(asked) * MEASURE_SAMPLES)
    finally:
        stop_engine(llm)
    out_dir.mkdir(parents=True, exist_ok=True)
    right = {name: write_dataset(out_dir / f"{name}.jsonl", pairs, task) for name, pairs in datasets.items()}
    manifest = {"n": n, "student": cfg.model.student, "hard_train": cfg.data.hard_train,
                "measure": {"samples": MEASURE_SAMPLES, "temperature": cfg.student.temperature},
                "base_success_on_true_walks": success, "right_labels": right,
                "noisy_letters": sorted(world.noise())}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    lines = [f"base student's sampled success on each dataset's questions (true walks, {MEASURE_SAMPLES} samples, "
             f"temperature {cfg.student.temperature:g}), and the share of right labels:"]
    lines += [f"{out_dir / (name + '.jsonl')}: {n} rows, success {success[name]:.1%}, {right[name]:.0%} right labels"
              for name in datasets]
    return "\n".join(lines)


"""What the teachers of the rung-3 study wrote: the share of stepping stones (walks of 1-2 steps
through at least one noisy letter, rung 1's winning dataset) among the valid questions of the first
and last 5 outer steps and among the promoted questions, the mean walk length, and the correlation
over all datasets of a run between the dataset's reward and its number of stones.
Usage: bash run.sh python docs/probe/walk/study_bands.py [RUNS_DIR]"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from soar_orl.formats import QAPair
from soar_orl.tasks.walk import WalkTask, parse_question

MODES = ("grounded", "base_teacher", "intrinsic")
TASK = WalkTask()
WORLD = TASK.world


def is_stone(question: str) -> bool:
    parsed = parse_question(question)
    return parsed is not None and parsed[1] <= 2 and WORLD.noisy_crossings(*parsed) >= 1


def mean_length(questions: list[str]) -> float:
    return statistics.mean(parsed[1] for parsed in map(parse_question, questions) if parsed is not None)


def pearson(xs: list[float], ys: list[float]) -> float:
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan")
    mx, my = statistics.mean(xs), statistics.mean(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return cov / (sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys)) ** 0.5


def step_datasets(run: Path, step: int) -> dict[int, tuple[float, list[str]]]:
    """dataset index -> (its reward, its questions) of one outer step's valid teacher samples."""
    datasets: dict[int, tuple[float, list[str]]] = {}
    for line in (run / "teacher_samples" / f"step_{step}.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("valid") and row.get("dataset") is not None:
            pair = TASK.parse_teacher_output(row["text"])
            assert isinstance(pair, QAPair), row  # the run recorded it as valid
            datasets.setdefault(row["dataset"], (row["reward"], []))[1].append(pair.question)
    return datasets


def run_row(run: Path, outer_steps: int) -> str:
    steps = [step_datasets(run, step) for step in range(outer_steps)]
    early = [q for datasets in steps[:5] for _, qs in datasets.values() for q in qs]
    late = [q for datasets in steps[-5:] for _, qs in datasets.values() for q in qs]
    rewards = [reward for datasets in steps for reward, _ in datasets.values()]
    stones = [sum(map(is_stone, qs)) for datasets in steps for _, qs in datasets.values()]
    promoted = [pair["question"] for line in (run / "promoted_questions.jsonl").read_text().splitlines()
                for pair in json.loads(line)["pairs"]]
    return (f"| {run.name} | {100 * statistics.mean(map(is_stone, early)):.1f}% "
            f"| {100 * statistics.mean(map(is_stone, late)):.1f}% "
            f"| {mean_length(early):.1f} / {mean_length(late):.1f} "
            f"| {100 * statistics.mean(map(is_stone, promoted)):.1f}% of {len(promoted)} "
            f"| {pearson(rewards, stones):+.2f} |")


if __name__ == "__main__":
    runs_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
    print("| run | stones, steps 0-4 | stones, last 5 steps | mean walk length early / late "
          "| stones among promoted | corr(dataset reward, its stones) |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in MODES:
        for seed in (0, 1, 2):
            run = runs_dir / f"qs-walk-pt-{mode}-s{seed}"
            if (run / "promoted_questions.jsonl").exists():
                print(run_row(run, len(list((run / "teacher_samples").glob("step_*.jsonl")))))

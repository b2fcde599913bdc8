"""`soar filter`: a fail@k hard set from a problem file and a model, resumable.

Every problem is sampled k times (paper: k = 128 at temperature 1, 1024 tokens) and graded by the
task's verifier; the problems solved 0/k are split 50/50 by a seeded hash (eval/splits.py).

The work is cut into shards of problems, in file order. Each finished shard is written to
`shards/shard_NNNNN.jsonl` atomically, so a killed run, restarted with the same command, samples
only the shards that have no file yet. The settings of the first run are kept in
`filter_settings.json`; a restart with other settings (model, problems, k, ...) is refused, since
mixing them would make the success counts meaningless. A resumed run's samples are not the
samples an uninterrupted run would have drawn (the engine's random stream restarts), but they are
drawn from the same distribution, which is all fail@k needs.

Output: `train.jsonl`, `test.jsonl` (rows as the problem file, readable by tasks/math.py
load_problems), `full_train.jsonl` (every problem of the pool except the hard test split: the
Oracle's "full real training set", as `builtin:arith/full_train` is for the arithmetic world),
`success_counts.jsonl` (id, successes, k) and `summary.json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from soar_orl.cache import content_hash
from soar_orl.eval.sampling import ProblemSamples
from soar_orl.eval.splits import HardSplit, hard_split
from soar_orl.meta.run_dir import atomic_write_text
from soar_orl.tasks.base import Problem

SETTINGS_FILE = "filter_settings.json"
SHARDS_DIR = "shards"
COUNTS_FILE = "success_counts.jsonl"
SUMMARY_FILE = "summary.json"


class FilterResumeError(ValueError):
    """The output folder holds a filter run with other settings."""


@dataclass(frozen=True)
class FilterSettings:
    model: str
    task: str
    k: int = 128
    temperature: float = 1.0
    max_tokens: int = 1024
    seed: int = 0
    """Seeds the sampling engine and the 50/50 split."""
    dtype: str = "bfloat16"
    """The engine's dtype: bf16 and fp32 sample from slightly different distributions."""
    shard_size: int = 32
    """Problems per shard: the most work a kill can lose."""
    keep_responses: bool = False
    """Keep every sampled text in the shards (k x problems texts: large at k = 128)."""

    def __post_init__(self) -> None:
        if self.k < 1 or self.shard_size < 1 or self.max_tokens < 1:
            raise ValueError(f"k, shard_size and max_tokens must be positive, got {self}")


def plan_shards(problems: Sequence[Problem], shard_size: int) -> list[list[Problem]]:
    return [list(problems[i : i + shard_size]) for i in range(0, len(problems), shard_size)]


def shard_path(out_dir: Path, index: int) -> Path:
    return out_dir / SHARDS_DIR / f"shard_{index:05d}.jsonl"


def problems_fingerprint(problems: Sequence[Problem]) -> str:
    return content_hash([[p.id, p.problem, p.answer] for p in problems])


def claim_output(out_dir: Path, settings: FilterSettings, problems: Sequence[Problem]) -> None:
    """Record the settings of a new run, or check that a resumed run has the same ones."""
    record = {**asdict(settings), "problems": problems_fingerprint(problems), "num_problems": len(problems)}
    path = out_dir / SETTINGS_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        differences = [f"{key}: {saved.get(key)!r} before, {record.get(key)!r} now"
                       for key in sorted(set(saved) | set(record)) if saved.get(key) != record.get(key)]
        if differences:
            raise FilterResumeError(f"{out_dir} holds a filter run with other settings (use another --out):\n  "
                                    + "\n  ".join(differences))
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def pending_shards(out_dir: Path, num_shards: int) -> list[int]:
    return [i for i in range(num_shards) if not shard_path(out_dir, i).exists()]


def write_shard(out_dir: Path, index: int, samples: Sequence[ProblemSamples], keep_responses: bool) -> None:
    rows = []
    for s in samples:
        row = {"id": s.problem_id, "successes": s.num_correct, "k": len(s.correct)}
        if keep_responses:
            row |= {"responses": list(s.responses), "correct": list(s.correct)}
        rows.append(json.dumps(row))
    atomic_write_text(shard_path(out_dir, index), "".join(line + "\n" for line in rows))


def read_counts(out_dir: Path, num_shards: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(num_shards):
        for line in shard_path(out_dir, i).read_text().splitlines():
            row = json.loads(line)
            counts[row["id"]] = row["successes"]
    return counts


def finish(out_dir: Path, problems: Sequence[Problem], counts: dict[str, int], settings: FilterSettings) -> HardSplit:
    """Write the split, the success counts and a summary from the finished shards."""
    split = hard_split(counts, settings.k, settings.seed)
    by_id = {p.id: p for p in problems}
    held_out = set(split.test)
    full_train = tuple(p.id for p in problems if p.id not in held_out)
    for name, ids in (("train", split.train), ("test", split.test), ("full_train", full_train)):
        rows = [{"id": i, "problem": by_id[i].problem, "answer": by_id[i].answer, **by_id[i].metadata} for i in ids]
        atomic_write_text(out_dir / f"{name}.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    atomic_write_text(out_dir / COUNTS_FILE, "".join(
        json.dumps({"id": p.id, "successes": counts[p.id], "k": settings.k}) + "\n" for p in problems))
    summary = {"problems": len(problems), "hard": len(split.train) + len(split.test), "train": len(split.train),
               "test": len(split.test), "k": settings.k,
               "mean_success_rate": sum(counts.values()) / (settings.k * len(problems))}
    atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return split


def run_filter(
    problems: Sequence[Problem],
    settings: FilterSettings,
    out_dir: Path,
    sample_shard: Callable[[list[Problem]], list[ProblemSamples]],
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> HardSplit:
    """Sample the shards that have no file yet with `sample_shard`, then write the split."""
    if len({p.id for p in problems}) != len(problems):
        raise ValueError("problem ids must be unique")
    claim_output(out_dir, settings, problems)
    shards = plan_shards(problems, settings.shard_size)
    todo = pending_shards(out_dir, len(shards))
    for done, index in enumerate(todo, start=1):
        write_shard(out_dir, index, sample_shard(shards[index]), settings.keep_responses)
        progress(done, len(todo))
    return finish(out_dir, problems, read_counts(out_dir, len(shards)), settings)

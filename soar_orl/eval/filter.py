"""`soar filter`: a fail@k hard set from a problem file and a model, resumable.

Every problem is sampled k times (paper: k = 128 at temperature 1, 1024 tokens) and graded by the
task's verifier; the problems solved 0/k are split 50/50 by a seeded hash (eval/splits.py).

The work is cut into shards of problems, in file order, sampled by the engines of a
SamplingService and written to `shards/shard_NNNNN.jsonl` as each finishes; a killed run,
restarted with the same command, samples only the shards that have no file yet, and a restart
with other settings is refused (eval/shards.py; the settings are kept in `filter_settings.json`).
Each problem's samples are seeded by the problem itself (eval/sampling.py), so a resumed run
draws the samples an uninterrupted run would have drawn, up to vLLM's own nondeterminism.

Output: `train.jsonl`, `test.jsonl` (rows as the problem file, readable by tasks/problems.py
load_problems), `full_train.jsonl` (every problem of the pool except the hard test split: the
Oracle's "full real training set", as `builtin:arith/full_train` is for the arithmetic world),
`success_counts.jsonl` (id, successes, k) and `summary.json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from soar_orl.eval.sampling import ProblemSamples, SamplingParams, Shard
from soar_orl.eval.shards import (
    Sampler,
    claim_output,
    model_fingerprint,
    plan_shards,
    problems_fingerprint,
    sample_pending,
    shard_file,
)
from soar_orl.eval.splits import HardSplit, hard_split
from soar_orl.files import atomic_write_text
from soar_orl.tasks.base import Problem
from soar_orl.tasks.problems import write_problems

SETTINGS_FILE = "filter_settings.json"
SHARDS_DIR = "shards"
COUNTS_FILE = "success_counts.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class FilterSettings:
    model: str
    task: str
    k: int = 128
    temperature: float = 1.0
    max_tokens: int = 1024
    seed: int = 0
    """Seeds every problem's samples (with the problem's id and text) and the 50/50 split."""
    dtype: str = "bfloat16"
    """The engine's dtype: bf16 and fp32 sample from slightly different distributions."""
    max_model_len: int = 2048
    """The engine's context: a long prompt leaves fewer tokens for its answers."""
    shard_size: int = 32
    """Problems per shard: the most work a kill can lose."""
    keep_responses: bool = False
    """Keep every sampled text in the shards (k x problems texts: large at k = 128)."""

    def __post_init__(self) -> None:
        if self.k < 1 or self.shard_size < 1 or self.max_tokens < 1:
            raise ValueError(f"k, shard_size and max_tokens must be positive, got {self}")


def shard_path(out_dir: Path, index: int) -> Path:
    return shard_file(out_dir / SHARDS_DIR, index)


def write_shard(shard: Shard, samples: Sequence[ProblemSamples], keep_responses: bool) -> None:
    rows = []
    for s in samples:
        row = {"id": s.problem_id, "successes": s.num_correct, "k": len(s.correct)}
        if keep_responses:
            row |= {"responses": list(s.responses), "correct": list(s.correct)}
        rows.append(json.dumps(row))
    atomic_write_text(shard.path, "".join(line + "\n" for line in rows))


def read_counts(shards: Sequence[Shard]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for shard in shards:
        for line in shard.path.read_text().splitlines():
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
        write_problems(out_dir / f"{name}.jsonl", (by_id[i] for i in ids))
    atomic_write_text(out_dir / COUNTS_FILE, "".join(
        json.dumps({"id": p.id, "successes": counts[p.id], "k": settings.k}) + "\n" for p in problems))
    summary = {"problems": len(problems), "hard": len(split.train) + len(split.test), "train": len(split.train),
               "test": len(split.test), "k": settings.k,
               "mean_success_rate": sum(counts.values()) / (settings.k * len(problems))}
    atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return split


def run_filter(problems: Sequence[Problem], settings: FilterSettings, out_dir: Path, sampler: Sampler) -> HardSplit:
    """Sample the shards that have no file yet with `sampler`, then write the split."""
    if len({p.id for p in problems}) != len(problems):
        raise ValueError("problem ids must be unique")
    claim_output(out_dir, SETTINGS_FILE, {**asdict(settings), "model_files": model_fingerprint(settings.model),
                                          "problems": problems_fingerprint(problems), "num_problems": len(problems)})
    shards = plan_shards(problems, settings.shard_size, settings.seed, lambda i: shard_path(out_dir, i))
    sample_pending(sampler, shards, SamplingParams(settings.k, settings.temperature, settings.max_tokens),
                   lambda shard, samples: write_shard(shard, samples, settings.keep_responses),
                   f"fail@{settings.k} filter of {len(problems)} problems", out_dir)
    return finish(out_dir, problems, read_counts(shards), settings)

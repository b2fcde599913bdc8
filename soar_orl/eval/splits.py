"""Hard-set construction: the fail@k filter and a seeded 50/50 train/test split.

A problem is *hard* when the base model solved it in none of k samples (paper: k = 128 at
temperature 1). The survivors are split in half: train (the source of each step's Q_R) and test
(the final evaluation). The split ranks problems by a hash of (seed, id), so it is the same on
every re-run and machine, independent of input order, and needs no random state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soar_orl.tasks.base import Problem
from soar_orl.tasks.problems import write_problems

SPLIT_FILES = {"hard_train": "train.jsonl", "hard_test": "test.jsonl"}
SUMMARY_FILE = "hard_split.json"


@dataclass(frozen=True)
class HardSplit:
    """Problem ids of the two halves, each sorted by id; len(train) = floor(N / 2)."""

    train: tuple[str, ...]
    test: tuple[str, ...]


def fail_at_k(success_counts: Mapping[str, int], k: int) -> list[str]:
    """Sorted ids of the problems with 0 correct of k samples."""
    out_of_range = {pid: count for pid, count in success_counts.items() if not 0 <= count <= k}
    if out_of_range:
        raise ValueError(f"success counts must lie in [0, {k}], got {out_of_range}")
    return sorted(pid for pid, count in success_counts.items() if count == 0)


def split_in_half(ids: Iterable[str], seed: int) -> HardSplit:
    """Seeded 50/50 split; the odd problem out goes to test (paper: MATH-hard 359 / 360)."""
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    ranked = sorted(ids, key=lambda pid: hashlib.sha256(f"{seed}\x00{pid}".encode()).digest())
    half = len(ranked) // 2
    return HardSplit(train=tuple(sorted(ranked[:half])), test=tuple(sorted(ranked[half:])))


def hard_split(success_counts: Mapping[str, int], k: int, seed: int) -> HardSplit:
    """The fail@k problems, split in half."""
    return split_in_half(fail_at_k(success_counts, k), seed)


def write_hard_split(out_dir: Path, problems: Sequence[Problem], counts: Mapping[str, int], k: int, seed: int,
                     group: str, summary_key: str, settings: dict[str, Any]) -> HardSplit:
    """A built-in world's hard split into `out_dir`: the fail@k problems of `problems` (correct
    samples per id in `counts`) split in half into SPLIT_FILES, and SUMMARY_FILE with `settings`,
    the split's sizes and, under `summary_key`, per value of `metadata[group]` the pool size, the mean success per
    sample and how many were 0/k."""
    split = hard_split(counts, k, seed)
    by_id = {p.id: p for p in problems}
    for name, ids in (("hard_train", split.train), ("hard_test", split.test)):
        write_problems(out_dir / SPLIT_FILES[name], (by_id[i] for i in ids))
    groups: dict[str, list[int]] = {}
    for problem in problems:
        groups.setdefault(str(problem.metadata[group]), []).append(counts[problem.id])
    per_group = {name: {"pool": len(c), "mean_success": sum(c) / k / len(c), "hard": c.count(0)}
                 for name, c in groups.items()}
    summary = {"settings": settings, "train": len(split.train), "test": len(split.test), summary_key: per_group}
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return split

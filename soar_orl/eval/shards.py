"""Resumable sampling into shard files, shared by `soar filter`, `soar eval` and a run's final
evaluation.

A command cuts its problems into shards and writes each finished shard to its own file
atomically, so a killed run, restarted with the same command, samples only the shards that have
no file yet. The settings of the first run are kept in a settings file beside them
(`claim_output`); a restart with other settings (model, problems, samples, ...) is refused with
what differs, since mixing them would make the numbers meaningless. Settings that do not change
the samples, such as the number of GPUs, are not recorded: a resumed run may use more or fewer
(the samples are seeded per problem, eval/sampling.py).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from soar_orl.cache import content_hash
from soar_orl.console import terminal_err
from soar_orl.eval.sampling import OnShardDone, ProblemSamples, SamplingParams, Shard
from soar_orl.files import atomic_write_text
from soar_orl.tasks.base import Problem


class ResumeError(ValueError):
    """The output folder holds a run with other settings."""


class Sampler(Protocol):
    """What the resumable commands sample with: eval/sampling.py SamplingService, or a test's
    stand-in."""

    model_dir: str
    task_name: str

    def sample_shards(self, shards: Sequence[Shard], params: SamplingParams, on_done: OnShardDone) -> None: ...


def problems_fingerprint(problems: Sequence[Problem]) -> str:
    return content_hash([[p.id, p.problem, p.answer] for p in problems])


def model_fingerprint(model: str) -> str:
    """Names, sizes and modification times of a model folder's files (a hub name: the name), so
    a model retrained into the same folder is not taken for the one a run started with."""
    path = Path(model)
    if not path.is_dir():
        return model
    return content_hash(sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in path.iterdir() if f.is_file()))


def claim_output(out_dir: Path, settings_file: str, record: dict[str, Any], replace_other: bool = False) -> None:
    """Record the settings of a new run in out_dir/settings_file, or check that a resumed run
    has the same ones: raise ResumeError listing what differs, or with `replace_other` (a folder
    the caller owns, e.g. a run's evaluation of a retrained model) empty the folder and start over."""
    path = out_dir / settings_file
    if path.exists():
        saved = json.loads(path.read_text())
        differences = [f"{key}: {saved.get(key)!r} before, {record.get(key)!r} now"
                       for key in sorted(set(saved) | set(record)) if saved.get(key) != record.get(key)]
        if not differences:
            return
        if not replace_other:
            raise ResumeError(f"{out_dir} holds a run with other settings (use another output folder):\n  "
                              + "\n  ".join(differences))
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def plan_shards(problems: Sequence[Problem], shard_size: int, seed: int, path_of: Callable[[int], Path]) -> list[Shard]:
    """Consecutive shards of `shard_size` problems in the given order; shard i finishes in path_of(i)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    return [Shard(path_of(i), tuple(problems[start : start + shard_size]), seed)
            for i, start in enumerate(range(0, len(problems), shard_size))]


def shard_file(folder: Path, index: int) -> Path:
    return folder / f"shard_{index:05d}.jsonl"


def progress_bar(total: int, done: int, desc: str, disable: bool = False):
    """One bar over samples: done, samples per second (of this run's samples) and time left, on
    the terminal also while a run's other output goes to its log (soar_orl/console.py)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=desc, unit="sample", unit_scale=True, dynamic_ncols=True,
                smoothing=0.1, disable=disable, file=terminal_err())


def sample_pending(
    sampler: Sampler,
    shards: Sequence[Shard],
    params: SamplingParams,
    write: Callable[[Shard, list[ProblemSamples]], None],
    what: str,
    where: Path,
    bar=None,
) -> int:
    """Sample the shards that have no file yet, `write` each as it finishes, and show progress
    on `bar` (None: a bar of its own over these shards). Returns the number of shards sampled."""
    todo = [s for s in shards if not s.path.exists()]
    total = params.n * sum(len(s.problems) for s in shards)
    left = params.n * sum(len(s.problems) for s in todo)
    print(f"{what}: {left} of {total} samples to draw ({len(todo)} of {len(shards)} shards), writing to {where}",
          file=sys.stderr, flush=True)
    own_bar = bar is None
    if own_bar:
        bar = progress_bar(total, total - left, what)
    else:  # already on disk: done, but not drawn by this run, so not in its rate
        if not bar.disable:  # a disabled tqdm keeps no `initial`
            bar.initial += total - left
        bar.n += total - left
        bar.refresh()

    def on_done(shard: Shard, samples: list[ProblemSamples]) -> None:
        write(shard, samples)
        bar.update(params.n * len(shard.problems))

    try:
        sampler.sample_shards(todo, params, on_done)
    finally:
        if own_bar:
            bar.close()
    return len(todo)

"""pass@k of one model on one or more test sets, with every sample kept, resumable.

Each (model, test set, seed) is cut into shards of problems, sampled by the engines of a
SamplingService and written to `<name>.shards/shard_NNNNN.jsonl` as each finishes; a killed run,
restarted with the same command, samples only the shards that have no file yet, and a restart
with other settings is refused (eval/shards.py, the mechanism `soar filter` uses; the settings
are kept in `eval_settings.json`). When every shard of a test set is there, its rows are joined
in problem order into `<name>.samples.jsonl` (one row per problem: responses and their grades),
and pass@k is computed from that file, so any table can be recomputed, and checked, from what is
on disk. All test sets and seeds of a model share its engines and one progress bar.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from soar_orl.eval.passk import SeedSpread, mean_pass_at_k
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
from soar_orl.files import atomic_write_text
from soar_orl.tasks.base import Problem

SAMPLES_SUFFIX = ".samples.jsonl"
SHARDS_SUFFIX = ".shards"
SETTINGS_FILE = "eval_settings.json"


@dataclass(frozen=True)
class EvalSettings:
    samples: int
    ks: tuple[int, ...]
    temperature: float
    max_new_tokens: int
    seed: int
    dtype: str
    max_model_len: int
    shard_size: int = 16
    """Problems per shard: the most work a kill can lose."""

    @classmethod
    def from_config(cls, cfg) -> EvalSettings:
        ev = cfg.evaluation
        return cls(ev.samples, tuple(ev.ks), ev.temperature, ev.max_new_tokens, ev.seed, cfg.model.dtype,
                   cfg.model.max_model_len)

    @property
    def sampling(self) -> SamplingParams:
        return SamplingParams(self.samples, self.temperature, self.max_new_tokens)


def pass_at_k_of(samples: Sequence[ProblemSamples], ks: Sequence[int]) -> dict[int, float]:
    """Problem-averaged unbiased pass@k; every problem must have the same number of samples."""
    sizes = {len(s.correct) for s in samples}
    if len(sizes) != 1:
        raise ValueError(f"every problem needs the same number of samples, got sizes {sorted(sizes)}")
    (n,) = sizes
    return {k: mean_pass_at_k([s.num_correct for s in samples], n, k) for k in ks}


def write_samples(path: Path, samples: Sequence[ProblemSamples]) -> None:
    atomic_write_text(path, "".join(json.dumps(s.to_row()) + "\n" for s in samples))


def read_samples(path: Path) -> list[ProblemSamples]:
    return [ProblemSamples.from_row(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def evaluate_model(
    sampler: Sampler,
    test_sets: Mapping[str, Sequence[Problem]],
    settings: EvalSettings,
    out_dir: Path,
    bar=None,
    replace_other: bool = False,
) -> dict[str, dict[int, float]]:
    """Sample and grade every test set under settings.seed, into out_dir; test set -> {k: pass@k}.
    `bar`: a progress bar shared with other evaluations (None: one of its own); `replace_other`:
    start out_dir over if it holds another evaluation (a run's own folder) instead of refusing."""
    return _evaluate(sampler, test_sets, settings, {settings.seed: out_dir}, out_dir, bar, replace_other)[settings.seed]


def evaluate_over_seeds(
    sampler: Sampler,
    test_sets: Mapping[str, Sequence[Problem]],
    settings: EvalSettings,
    seeds: Sequence[int],
    out_dir: Path,
) -> dict[str, dict[int, SeedSpread]]:
    """`evaluate_model` once per seed (into out_dir/seed_S), on the same engines; per test set
    and k, mean and spread over the seeds."""
    per_seed = _evaluate(sampler, test_sets, settings, {seed: out_dir / f"seed_{seed}" for seed in seeds}, out_dir)
    return {
        name: {k: SeedSpread.of([per_seed[seed][name][k] for seed in seeds]) for k in settings.ks}
        for name in test_sets
    }


def evaluation_size(test_sets: Mapping[str, Sequence[Problem]], settings: EvalSettings, seeds: int = 1) -> int:
    """Samples an evaluation draws: the total of a progress bar shared by several evaluations."""
    return seeds * settings.samples * sum(len(problems) for problems in test_sets.values())


def _evaluate(
    sampler: Sampler,
    test_sets: Mapping[str, Sequence[Problem]],
    settings: EvalSettings,
    seed_dirs: Mapping[int, Path],
    out_dir: Path,
    bar=None,
    replace_other: bool = False,
) -> dict[int, dict[str, dict[int, float]]]:
    for name, problems in test_sets.items():
        if len({p.id for p in problems}) != len(problems):
            raise ValueError(f"test set {name}: problem ids must be unique")
    # Everything that decides the samples; the ks only read them afterwards, so they may change.
    claim_output(out_dir, SETTINGS_FILE, {
        "model": sampler.model_dir, "model_files": model_fingerprint(sampler.model_dir), "task": sampler.task_name,
        "samples": settings.samples, "temperature": settings.temperature, "max_new_tokens": settings.max_new_tokens,
        "dtype": settings.dtype, "max_model_len": settings.max_model_len, "shard_size": settings.shard_size,
        "seeds": list(seed_dirs), "test_sets": {name: problems_fingerprint(p) for name, p in test_sets.items()},
    }, replace_other)
    shards = {
        (seed, name): plan_shards(problems, settings.shard_size, seed,
                                  lambda i, folder=seed_dir / f"{name}{SHARDS_SUFFIX}": shard_file(folder, i))
        for seed, seed_dir in seed_dirs.items() for name, problems in test_sets.items()
    }
    every_shard = [shard for group in shards.values() for shard in group]
    sample_pending(sampler, every_shard, settings.sampling, _write_shard,
                   f"pass@k of {sampler.model_dir} on {', '.join(test_sets)} x {len(seed_dirs)} seed(s)", out_dir, bar)
    results: dict[int, dict[str, dict[int, float]]] = {seed: {} for seed in seed_dirs}
    for (seed, name), group in shards.items():
        samples = [s for shard in group for s in read_samples(shard.path)]
        write_samples(seed_dirs[seed] / f"{name}{SAMPLES_SUFFIX}", samples)
        results[seed][name] = pass_at_k_of(samples, settings.ks)
    return results


def _write_shard(shard: Shard, samples: list[ProblemSamples]) -> None:
    write_samples(shard.path, samples)


def format_pass_at_k(results: Mapping[str, Mapping[int, SeedSpread]], sizes: Mapping[str, int], samples: int) -> str:
    """Markdown: one row per test set, pass@k in % as mean ± std over seeds."""
    ks = sorted({k for table in results.values() for k in table})
    seeds = {len(cell.per_seed) for table in results.values() for cell in table.values()}
    lines = [f"pass@k (%) from {samples} samples per problem, mean ± std over {max(seeds)} seed(s)", "",
             "| test set | problems | " + " | ".join(f"pass@{k}" for k in ks) + " |", "|---|---:|" + "---:|" * len(ks)]
    for name, table in results.items():
        lines.append(f"| {name} | {sizes[name]} | "
                     + " | ".join(f"{100 * table[k].mean:.2f} ± {100 * table[k].std:.2f}" for k in ks) + " |")
    return "\n".join(lines) + "\n"


def write_pass_at_k_report(out_dir: Path, model: str, settings: EvalSettings, seeds: Sequence[int],
                           results: Mapping[str, Mapping[int, SeedSpread]], sizes: Mapping[str, int]) -> Path:
    """`pass_at_k.json` (mean, std and per-seed values, in `seeds` order, per test set and k) and `pass_at_k.md`."""
    record = {
        "model": model, "samples": settings.samples, "temperature": settings.temperature,
        "max_new_tokens": settings.max_new_tokens, "seeds": list(seeds), "problems": dict(sizes),
        "pass_at_k": {name: {str(k): {"mean": c.mean, "std": c.std, "per_seed": list(c.per_seed)} for k, c in table.items()}
                      for name, table in results.items()},
    }
    atomic_write_text(out_dir / "pass_at_k.json", json.dumps(record, indent=2) + "\n")
    atomic_write_text(out_dir / "pass_at_k.md", format_pass_at_k(results, sizes, settings.samples))
    return out_dir / "pass_at_k.md"

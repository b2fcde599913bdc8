"""pass@k of one model on one or more test sets, with every sample kept.

Each (model, test set) writes `<name>.samples.jsonl` (one row per problem: responses and their
grades) and the pass@k numbers are computed from that file, so any table can be recomputed, and
checked, from what is on disk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from soar_orl.eval.passk import SeedSpread, mean_pass_at_k
from soar_orl.eval.sampling import ProblemSamples, sample_and_grade, start_engine, stop_engine
from soar_orl.meta.run_dir import atomic_write_text
from soar_orl.tasks.base import Problem, Task

SAMPLES_SUFFIX = ".samples.jsonl"


@dataclass(frozen=True)
class EvalSettings:
    samples: int
    ks: tuple[int, ...]
    temperature: float
    max_new_tokens: int
    seed: int
    dtype: str
    max_model_len: int

    @classmethod
    def from_config(cls, cfg) -> EvalSettings:
        ev = cfg.evaluation
        return cls(ev.samples, tuple(ev.ks), ev.temperature, ev.max_new_tokens, ev.seed, cfg.model.dtype,
                   cfg.model.max_model_len)


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
    model_dir: str | Path,
    task: Task,
    test_sets: Mapping[str, Sequence[Problem]],
    settings: EvalSettings,
    out_dir: Path,
) -> dict[str, dict[int, float]]:
    """Sample and grade every test set with one engine; test set name -> {k: pass@k}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    llm = start_engine(model_dir, settings.dtype, settings.max_model_len, settings.seed)
    try:
        results = {}
        for name, problems in test_sets.items():
            samples = sample_and_grade(llm, task, problems, settings.samples, settings.temperature,
                                       settings.max_new_tokens)
            write_samples(out_dir / f"{name}{SAMPLES_SUFFIX}", samples)
            results[name] = pass_at_k_of(samples, settings.ks)
    finally:
        stop_engine(llm)
    return results


def evaluate_over_seeds(
    model_dir: str | Path,
    task: Task,
    test_sets: Mapping[str, Sequence[Problem]],
    settings: EvalSettings,
    seeds: Sequence[int],
    out_dir: Path,
) -> dict[str, dict[int, SeedSpread]]:
    """`evaluate_model` once per seed (into out_dir/seed_S); per test set and k, mean and spread."""
    per_seed = [evaluate_model(model_dir, task, test_sets, replace(settings, seed=seed), out_dir / f"seed_{seed}")
                for seed in seeds]
    return {
        name: {k: SeedSpread.of([run[name][k] for run in per_seed]) for k in settings.ks}
        for name in test_sets
    }


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

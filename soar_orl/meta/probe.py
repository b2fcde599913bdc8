"""The ideal-teacher bound: the grounded reward that given datasets earn at a recipe's inner budget.

    bash run.sh probe recipes/quickstart.yaml --datasets hard.jsonl stones.jsonl --runs 3 --q-r-draws 4
    bash run.sh probe recipes/quickstart.yaml student.inner_steps=24 --datasets ... --out runs/probe-24

SOAR's teacher is rewarded by what its datasets do to a student: reset to the baseline,
`student.inner_steps` RLOO steps on the dataset, accuracy on Q_R (a fresh sample of
`data.q_r_size` hard train problems; greedy, or sampled with `student.q_r_samples`) minus the
baseline's accuracy on the same Q_R. This command
runs exactly that inner job (the StudentJob the outer loop submits, through the same StudentPool,
with one baseline job per Q_R draw as the loop has one per step) on datasets given as files, so
one can see what reward a perfect teacher could earn, and whether datasets differ by more than the
noise the teacher's RLOO has to learn through.

Each dataset is trained `--runs` times on each of `--q-r-draws` Q_R draws. A job's reward is its
accuracy minus the baseline of its draw; a dataset's grounded reward is the mean over its jobs,
reported with the std of one job's reward (the noise of one reward the teacher sees with
meta.r = 1) and the standard error of the mean; with a sampled Q_R, also pass@k on Q_R from each
job's correct samples per problem (so a long inner job on real problems, scored on the whole test
split as its only Q_R draw, measures a student trained by the inner loop like `soar eval` would).
Datasets are JSONL rows with the question under `question` (or `problem`) and the label under
`answer` (other fields are ignored), or built-in problem sets. Finished jobs
are kept in `jobs.jsonl` of the output folder under a hash of everything that decides them, so a
stopped probe continues where it was, and a changed setting reruns only what it changes.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from soar_orl.cache import content_hash
from soar_orl.config import SoarConfig
from soar_orl.eval.passk import pass_at_k_over_seeds
from soar_orl.formats import QAPair
from soar_orl.resolve import BUILTIN, resolve_problems
from soar_orl.tasks.base import Outcome, Task

log = logging.getLogger("soar")

JOBS_FILE = "jobs.jsonl"
REPORT_JSON = "probe.json"
REPORT_MD = "probe.md"
QUESTION_KEYS = ("question", "problem")
# A mean counts as clearly above tau when it exceeds it by this many standard errors (about a
# one-sided 2.5% test under a normal approximation).
CLEAR_MARGIN_SE = 2.0


# ---------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class ProbeDataset:
    name: str  # the file's stem: what the report calls it
    path: str
    pairs: tuple[QAPair, ...]


def load_dataset(path: str | Path) -> ProbeDataset:
    """The (question, label) pairs of a JSONL file, or of a built-in problem set
    (`builtin:arith/edge_full_train`, named after its split); a bad row is an error naming file
    and line."""
    if str(path).startswith(BUILTIN):
        problems = resolve_problems(str(path))
        return ProbeDataset(str(path).rpartition("/")[2], str(path), tuple(QAPair(p.problem, p.answer) for p in problems))
    path = Path(path)
    pairs = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            question = next((row[key] for key in QUESTION_KEYS if key in row), None)
            if not isinstance(question, str) or not question.strip() or "answer" not in row:
                raise ValueError(f"{path}:{number}: a probe row needs a non-empty 'question' (or 'problem') and an 'answer'")
            pairs.append(QAPair(question.strip(), str(row["answer"]).strip()))
    if not pairs:
        raise ValueError(f"{path}: no rows")
    return ProbeDataset(path.stem, str(path), tuple(pairs))


def write_dataset(path: Path, pairs: Sequence[QAPair], task: Task) -> float:
    """A probe dataset file: rows {question, answer, true_answer, right} (true_answer when the task
    computes one, e.g. arith and walk; right when the label grades as it); returns the share of
    right labels."""
    rows = []
    for pair in pairs:
        truth = task.reference_answer(pair.question)
        right = truth is not None and task.grade(task.response_for(truth), pair.answer).outcome is Outcome.CORRECT
        rows.append({"question": pair.question, "answer": pair.answer, "true_answer": truth, "right": right})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return sum(row["right"] for row in rows) / len(rows)


def unique_names(datasets: Sequence[ProbeDataset]) -> None:
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"datasets need distinct file names (stems), repeated: {duplicates}")


def q_r_draws(hard_train: Sequence[QAPair], size: int, draws: int, seed: int) -> list[tuple[QAPair, ...]]:
    """`draws` independent Q_R samples of `size` hard train problems, as the loop draws one per
    outer step (seeded by the run seed and the draw index)."""
    if size > len(hard_train):
        raise ValueError(f"data.q_r_size={size} exceeds the {len(hard_train)} hard train problems")
    return [tuple(random.Random(f"{seed}/probe/q_r/{d}").sample(list(hard_train), size)) for d in range(draws)]


# ---------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class PlannedJob:
    """One inner job of the probe: dataset `dataset` (None: the baseline) on Q_R draw `draw`."""

    job_id: str
    dataset: str | None
    draw: int
    run: int
    steps: int
    seed: int


def plan_jobs(dataset_names: Sequence[str], draws: int, runs: int, steps: int, seed: int) -> list[PlannedJob]:
    """Per draw: its baseline job first (0 steps, as the loop's), then every dataset's runs.
    Seeds differ per (draw, dataset, run), like the loop's per (step, dataset, run)."""
    jobs = []
    for d in range(draws):
        jobs.append(PlannedJob(f"d{d}-baseline", None, d, 0, 0, 0))
        for k, name in enumerate(dataset_names):
            for j in range(runs):
                job_seed = (seed * 1_000_003 + d * 10_007 + k * 101 + j) % 2**31
                jobs.append(PlannedJob(f"d{d}-{name}-r{j}", name, d, j, steps, job_seed))
    return jobs


def job_key(job: PlannedJob, train_pairs: Sequence[QAPair], eval_pairs: Sequence[QAPair], setting: dict) -> str:
    """Hash of everything that decides a job's result (its resume key)."""
    return content_hash({
        "steps": job.steps, "seed": job.seed, "setting": setting,
        "train": [asdict(p) for p in train_pairs] if job.steps else [],  # a baseline does not train
        "eval": [asdict(p) for p in eval_pairs],
    })


# ---------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class RewardStats:
    """A dataset's grounded reward over its jobs (each job: accuracy after - baseline of its draw)."""

    jobs: int
    mean: float
    std: float | None  # of one job's reward (None with one job)
    sem: float | None  # standard error of the mean
    trained_accuracy: float
    baseline_accuracy: float

    def clearly_above(self, tau: float) -> bool:
        """The mean exceeds tau by CLEAR_MARGIN_SE standard errors (never with one job)."""
        return self.sem is not None and self.mean - CLEAR_MARGIN_SE * self.sem > tau


def reward_stats(trained_J: Sequence[float], baseline_J: Sequence[float]) -> RewardStats:
    """Statistics of the rewards trained_J[i] - baseline_J[i] (one entry per job)."""
    if len(trained_J) != len(baseline_J) or not trained_J:
        raise ValueError(f"need as many baselines as trained accuracies (>= 1), got {len(trained_J)} and {len(baseline_J)}")
    rewards = [t - b for t, b in zip(trained_J, baseline_J, strict=True)]
    n = len(rewards)
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1)) if n > 1 else None
    return RewardStats(n, mean, std, None if std is None else std / math.sqrt(n),
                       sum(trained_J) / n, sum(baseline_J) / n)


def dataset_stats(rows: Sequence[dict], names: Sequence[str]) -> dict[str, RewardStats]:
    """Per dataset, the statistics of its finished jobs' rewards against their draws' baselines."""
    baselines = {row["draw"]: row["accuracy"] for row in rows if row["dataset"] is None}
    stats = {}
    for name in names:
        mine = [row for row in rows if row["dataset"] == name]
        stats[name] = reward_stats([row["accuracy"] for row in mine], [baselines[row["draw"]] for row in mine])
    return stats


# ---------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 4, signed: bool = False) -> str:
    return "-" if value is None else f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_table(datasets: Sequence[ProbeDataset], stats: dict[str, RewardStats], tau: float,
                 overlap: dict[str, float]) -> str:
    lines = [
        "| dataset | n | jobs | trained acc | baseline acc | reward (mean) | std (one job) | s.e. | "
        f"clearly > tau={tau:g} | Q_R overlap |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for d in datasets:
        s = stats[d.name]
        lines.append(
            f"| {d.name} | {len(d.pairs)} | {s.jobs} | {s.trained_accuracy:.4f} | {s.baseline_accuracy:.4f} | "
            f"{_fmt(s.mean, signed=True)} | {_fmt(s.std)} | {_fmt(s.sem)} | {'yes' if s.clearly_above(tau) else 'no'} | "
            f"{overlap[d.name]:.1f} |"
        )
    return "\n".join(lines)


def format_per_draw(datasets: Sequence[ProbeDataset], rows: Sequence[dict], draws: int) -> str:
    """Mean reward of each dataset on each draw, with the draw's baseline accuracy."""
    baselines = {row["draw"]: row["accuracy"] for row in rows if row["dataset"] is None}
    header = "| draw | baseline acc | " + " | ".join(d.name for d in datasets) + " |"
    lines = [header, "|---:|---:|" + "---:|" * len(datasets)]
    for draw in range(draws):
        cells = []
        for d in datasets:
            accs = [row["accuracy"] for row in rows if row["dataset"] == d.name and row["draw"] == draw]
            cells.append(_fmt(sum(accs) / len(accs) - baselines[draw], signed=True) if accs else "-")
        lines.append(f"| {draw} | {baselines[draw]:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def q_r_measure(setting: dict) -> str:
    """How the probed jobs were scored on Q_R, with the reward's resolution."""
    size, samples = setting["q_r_size"], setting["student"].get("q_r_samples", 0)
    if samples:
        return f"mean success of {samples} samples per Q_R problem (one sample = {1 / (samples * size):.5f})"
    return f"greedy Q_R accuracy (one problem = {1 / size:.4f})"


def pass_at_k_table(datasets: Sequence[ProbeDataset], rows: Sequence[dict], samples: int,
                    ks: Sequence[int]) -> str | None:
    """pass@k on Q_R (%) of the baseline and of each dataset's students, mean ± std over their
    jobs, from each job's correct samples per problem, at each of `ks` (the recipe's
    evaluation.ks) that the samples allow and at k = samples; None when Q_R is scored greedily or
    a row predates per-problem counts."""
    if samples < 2 or any("correct_Q" not in row for row in rows):
        return None
    ks = sorted({k for k in (*ks, samples) if k <= samples})
    groups = [("baseline", None), *((d.name, d.name) for d in datasets)]
    lines = ["| students | jobs | " + " | ".join(f"pass@{k}" for k in ks) + " |", "|---|---:|" + "---:|" * len(ks)]
    for label, name in groups:
        correct_JP = [row["correct_Q"] for row in rows if row["dataset"] == name]
        spread = pass_at_k_over_seeds(correct_JP, samples, ks)
        lines.append(f"| {label} | {len(correct_JP)} | " + " | ".join(
            f"{100 * spread[k].mean:.2f} ± {100 * spread[k].std:.2f}" for k in ks) + " |")
    return "\n".join(lines)


def write_report(out_dir: Path, command: str, setting: dict, datasets: Sequence[ProbeDataset], rows: Sequence[dict],
                 draws: int, tau: float, overlap: dict[str, float], seconds: float, ks: Sequence[int]) -> str:
    """probe.json and probe.md in out_dir; returns the markdown. `ks`: the pass@k columns (the
    recipe's evaluation.ks), passed apart from `setting` because they do not change a job (the
    setting is part of every job's resume key)."""
    stats = dataset_stats(rows, [d.name for d in datasets])
    job_seconds = [row["seconds"] for row in rows if row["dataset"] is not None]
    markdown = "\n\n".join([
        "# Probe: grounded reward of given datasets at the recipe's inner budget",
        f"```bash\n{command}\n```",
        f"inner job: {setting['student']['inner_steps']} RLOO steps of {setting['student']['batch_prompts']} prompts x "
        f"{setting['student']['group_size']} samples at lr {setting['student']['lr']:g}; |Q_R| = {setting['q_r_size']}, "
        f"{draws} draws; reward = {q_r_measure(setting)} after training - the baseline's on the same draw; "
        f"clearly > tau: mean - {CLEAR_MARGIN_SE:g} s.e. > tau; "
        "Q_R overlap: mean number of the dataset's questions that are in the Q_R draw.",
        format_table(datasets, stats, tau, overlap),
        "Mean reward per Q_R draw:",
        format_per_draw(datasets, rows, draws),
        *(["pass@k on Q_R (%, mean ± std over jobs; with one draw, over seeds):", table]
          if (table := pass_at_k_table(datasets, rows, setting["student"].get("q_r_samples", 0), ks)) else []),
        f"{len(job_seconds)} trained jobs, {sum(job_seconds) / max(1, len(job_seconds)):.1f} s each on average "
        f"(worker time); this invocation took {seconds:.0f} s.",
    ]) + "\n"
    (out_dir / REPORT_MD).write_text(markdown)
    (out_dir / REPORT_JSON).write_text(json.dumps({
        "command": command, "setting": setting, "tau": tau, "draws": draws,
        "datasets": {d.name: {"path": d.path, "n": len(d.pairs), "q_r_overlap": overlap[d.name],
                              **asdict(stats[d.name]), "clearly_above_tau": stats[d.name].clearly_above(tau)}
                     for d in datasets},
        "jobs": list(rows),
    }, indent=2) + "\n")
    return markdown


# ---------------------------------------------------------------------------- the probe


def read_finished(out_dir: Path) -> dict[str, dict]:
    """Finished job rows by resume key."""
    path = out_dir / JOBS_FILE
    if not path.exists():
        return {}
    return {row["key"]: row for row in map(json.loads, path.read_text().splitlines()) if row}


def run_probe(cfg: SoarConfig, dataset_paths: Sequence[str | Path], runs: int, draws: int, out_dir: Path,
              command: str) -> str:
    """Run (or continue) the probe; returns the markdown report (also written to out_dir)."""
    import ray

    from soar_orl.backend import init_ray, resolve_backend
    from soar_orl.meta.pool import StudentPool
    from soar_orl.resolve import resolve_model
    from soar_orl.student.worker import StudentJob, WorkerSpec

    started = time.perf_counter()
    if runs < 1 or draws < 1:
        raise ValueError(f"--runs and --q-r-draws must be >= 1, got {runs} and {draws}")
    datasets = [load_dataset(p) for p in dataset_paths]
    unique_names(datasets)
    by_name = {d.name: d for d in datasets}
    hard_train = [QAPair(p.problem, p.answer) for p in resolve_problems(cfg.data.hard_train)]
    draws_D = q_r_draws(hard_train, cfg.data.q_r_size, draws, cfg.run.seed)
    student_dir = str(resolve_model(cfg.model.student))
    setting = {"model": student_dir, "task": cfg.data.task, "student": cfg.student.model_dump(mode="json"),
               "dtype": cfg.model.dtype, "max_model_len": cfg.model.max_model_len, "q_r_size": cfg.data.q_r_size,
               "seed": cfg.run.seed}
    planned = plan_jobs([d.name for d in datasets], draws, runs, cfg.student.inner_steps, cfg.run.seed)

    def train_pairs(job: PlannedJob) -> tuple[QAPair, ...]:
        return by_name[job.dataset].pairs if job.dataset is not None else datasets[0].pairs

    keys = {job.job_id: job_key(job, train_pairs(job), draws_D[job.draw], setting) for job in planned}
    out_dir.mkdir(parents=True, exist_ok=True)
    finished = read_finished(out_dir)
    todo = [job for job in planned if keys[job.job_id] not in finished]
    log.info("probe: %d jobs planned, %d already finished in %s", len(planned), len(planned) - len(todo), out_dir)

    if todo:
        backend = resolve_backend(cfg.backend)
        init_ray(backend, declared_gpus=cfg.pools.cluster_gpus)
        pool = StudentPool(
            WorkerSpec.from_config(cfg, student_dir, backend),
            cfg.pools,
        )
        try:
            futures = zip(todo, pool.submit_many([
                StudentJob(f"probe-{job.job_id}", train_pairs(job), draws_D[job.draw], job.steps, seed=job.seed)
                for job in todo
            ]), strict=True)
            with open(out_dir / JOBS_FILE, "a") as handle:
                for job, future in futures:
                    result = future.result()
                    row = {"key": keys[job.job_id], **asdict(job), "accuracy": result.accuracy,
                           "correct": sum(result.correct_Q), "correct_Q": result.correct_Q,
                           "seconds": sum(result.timings.values()),
                           "train_reward_first": result.steps[0].reward_mean if result.steps else None,
                           "train_reward_last": result.steps[-1].reward_mean if result.steps else None}
                    handle.write(json.dumps(row) + "\n")
                    handle.flush()
                    finished[row["key"]] = row
                    log.info("probe job %s: accuracy %.4f (%.1f s)", job.job_id, result.accuracy, row["seconds"])
        finally:
            pool.shutdown()
            ray.shutdown()

    rows = [finished[keys[job.job_id]] | {"job_id": job.job_id} for job in planned]
    overlap = {d.name: sum(len({p.question for p in d.pairs} & {p.question for p in q_r}) for q_r in draws_D) / draws
               for d in datasets}
    return write_report(out_dir, command, setting, datasets, rows, draws, cfg.meta.tau, overlap,
                        time.perf_counter() - started, cfg.evaluation.ks)

"""`soar report RUN_DIR [RUN_DIR ...]`: several runs side by side, as the paper's tables.

Each run directory brings its resolved config (variant = meta.mode, seed), its metrics.jsonl and,
when it ran the final comparison (`evaluation.after_run`), eval/final.json. Runs of the same
variant are seeds of one experiment: the table gives, per method and test set, the mean and the
sample standard deviation over them of pass@k. A method is named by the variant that produced it
("SOAR-PS (grounded)"), except base, Hard-Only and Oracle, which do not depend on the teacher: they
are pooled over runs, one value per seed, since runs of a study differ only in variant and seed and
the same seed trains the same Hard-Only student whatever the variant.

The runs table also gives the mean teacher reward over the run's steps and, when `soar questions`
has run on it, the Vendi score, duplicate rate and (arith) share of right answers of its
questions. The report is `report.md` plus `curves.png` (teacher reward and Q_R accuracy of every
run).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev

import yaml

from soar_orl.eval.questions import answer_accuracy_text
from soar_orl.files import read_jsonl
from soar_orl.methods import METHODS

TEACHER_FREE_METHODS = tuple(method.name for method in METHODS if method.teacher_free)
EXAMPLE_QUESTIONS = 3


@dataclass(frozen=True)
class RunSummary:
    path: Path
    variant: str
    seed: int
    metrics: list[dict]
    final: dict | None  # eval/final.json, if the run ended with the comparison
    promoted: list[dict]
    questions: dict | None  # eval/questions.json, if `soar questions` ran on it

    @classmethod
    def load(cls, path: Path) -> RunSummary:
        config_file = path / "config.yaml"
        if not config_file.exists():
            raise FileNotFoundError(f"{path} is not a run directory (no config.yaml)")
        config = yaml.safe_load(config_file.read_text())
        final, questions = (path / "eval" / "final.json"), (path / "eval" / "questions.json")
        return cls(
            path, config["meta"]["mode"], config["run"]["seed"], read_jsonl(path / "metrics.jsonl"),
            json.loads(final.read_text()) if final.exists() else None,
            read_jsonl(path / "promoted_questions.jsonl"),
            json.loads(questions.read_text()) if questions.exists() else None,
        )


@dataclass(frozen=True)
class Cell:
    """pass@k of one method on one test set, over runs."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return mean(self.values)

    @property
    def std(self) -> float:
        return stdev(self.values) if len(self.values) > 1 else 0.0


def method_label(method: str, variant: str) -> str:
    return method if method in TEACHER_FREE_METHODS else f"{method} ({variant})"


def pass_at_k_cells(runs: Sequence[RunSummary]) -> dict[tuple[str, str, str], Cell]:
    """(method label, test set, k) -> the values of every run that has it."""
    values: dict[tuple[str, str, str], list[float]] = {}
    pooled_seeds: set[tuple[str, int]] = set()
    for run in runs:
        if run.final is None:
            continue
        for method, by_set in run.final["pass_at_k"].items():
            if method in TEACHER_FREE_METHODS:
                if (method, run.seed) in pooled_seeds:
                    continue
                pooled_seeds.add((method, run.seed))
            for test_set, table in by_set.items():
                for k, value in table.items():
                    values.setdefault((method_label(method, run.variant), test_set, k), []).append(value)
    return {key: Cell(tuple(v)) for key, v in values.items()}


def format_report(runs: Sequence[RunSummary], curves: Path | None) -> str:
    cells = pass_at_k_cells(runs)
    lines = ["# soar report", "",
             "| run | variant | seed | outer steps | promotions | mean reward | question Vendi | duplicates | right answers |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        steps = [row for row in run.metrics if "reward/mean" in row]
        reward = f"{mean(row['reward/mean'] for row in steps):+.4f}" if steps else "-"
        questions = run.questions["diversity"]["run"] if run.questions else {}
        vendi = f"{questions['vendi']:.1f} | {100 * questions['duplicate_rate']:.1f}%" if questions else "- | -"
        lines.append(f"| {run.path} | {run.variant} | {run.seed} | {len(steps)} | {len(run.promoted)} | {reward} | {vendi} | "
                     f"{answer_accuracy_text(questions)} |")
    lines.append("")
    for test_set in sorted({key[1] for key in cells}):
        ks = sorted({key[2] for key in cells if key[1] == test_set}, key=int)
        methods = sorted({key[0] for key in cells if key[1] == test_set}, key=_method_order)
        lines += [f"## {test_set}: pass@k (%), mean ± std over runs (n = runs)", "",
                  "| method | n | " + " | ".join(f"pass@{k}" for k in ks) + " |", "|---|---:|" + "---:|" * len(ks)]
        for method in methods:
            row = [cells.get((method, test_set, k)) for k in ks]
            count = max(len(c.values) for c in row if c is not None)
            lines.append(f"| {method} | {count} | " + " | ".join(
                "-" if c is None else f"{100 * c.mean:.2f} ± {100 * c.std:.2f}" for c in row) + " |")
        lines.append("")
    if not cells:
        lines += ["No run has a final evaluation (eval/final.json): set `evaluation.after_run`.", ""]
    for run in runs:
        if run.promoted:
            last = run.promoted[-1]
            lines.append(f"Promoted questions of {run.path}, step {last['step']}:")
            lines += [f"- `{p['question']}` -> `{p['answer']}`" for p in last["pairs"][:EXAMPLE_QUESTIONS]]
            lines.append("")
    if curves is not None:
        lines += [f"![curves]({curves.name})", ""]
    return "\n".join(lines)


def plot_runs(runs: Sequence[RunSummary], out: Path) -> Path | None:
    """Teacher reward (mean over datasets) and best trained student's Q_R accuracy of every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_steps = [run for run in runs if any("reward/mean" in row for row in run.metrics)]
    if not with_steps:
        return None
    fig, (reward_ax, acc_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for run in with_steps:
        rows = [row for row in run.metrics if "reward/mean" in row]
        steps = [row["step"] for row in rows]
        label = f"{run.path.name} ({run.variant}, seed {run.seed})"
        reward_ax.plot(steps, [row["reward/mean"] for row in rows], label=label)
        acc_ax.plot(steps, [row["student/q_r_acc_best"] for row in rows], label=label)
    reward_ax.set_ylabel("teacher reward (mean)")
    acc_ax.set_ylabel("best student Q_R accuracy")
    acc_ax.set_xlabel("outer step")
    reward_ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_report(run_paths: Sequence[Path], out_dir: Path) -> Path:
    runs = [RunSummary.load(Path(p)) for p in run_paths]
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = plot_runs(runs, out_dir / "curves.png")
    report = out_dir / "report.md"
    report.write_text(format_report(runs, curves))
    return report


def _method_order(label: str) -> tuple[int, str]:
    return next((i for i, method in enumerate(METHODS) if label.startswith(method.name)), len(METHODS)), label

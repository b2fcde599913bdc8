"""How a SOAR run ends (`evaluation.after_run`): baselines with the same student budget, pass@k
of every method on the test sets, a table, the promoted questions and the curves.

Methods (paper, section 4):
- base: the base student, untrained;
- Hard-Only: a fresh base student trained by vanilla OpenRLHF RLVR on the hard train split for
  `meta.rlvr_steps` steps (meta/rlvr.py); Oracle: the same on the full real training set;
- SOAR-PS: the promoted student, i.e. the run's last baseline student (the base model when
  nothing was promoted);
- SOAR-PQ: a fresh base student trained by the same RLVR, with the same budget, on the promoted
  questions (teacher-written, with the teacher's answers as labels) and the hard train split;
- SOAR-T: the same with questions sampled afresh from the run's final teacher (for base_teacher,
  the base teacher), as many as the budget has prompts.

Everything lands in the run directory: `baselines/<method>/` (their own run directories, each
naming its method in `method.json`),
`eval/<method>/<test set>.samples.jsonl`, `eval/final.json` and `eval/final.md`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from soar_orl.config import SoarConfig, derive_config
from soar_orl.console import terminal_out
from soar_orl.eval.evaluate import EvalSettings, evaluate_model, evaluation_size
from soar_orl.eval.sampling import SamplingService
from soar_orl.eval.shards import progress_bar
from soar_orl.eval.plots import plot_soar_curves
from soar_orl.meta.rlvr import prompt_budget, run_rlvr
from soar_orl.meta.run_dir import baseline_student_dir, read_jsonl
from soar_orl.resolve import resolve_model, resolve_problems
from soar_orl.tasks import build_task
from soar_orl.tasks.base import Problem

log = logging.getLogger("soar")

METHODS = ("base", "Hard-Only", "Oracle", "SOAR-PS", "SOAR-PQ", "SOAR-T")
SHOWN_PROMOTED_QUESTIONS = 5


def run_comparison(cfg: SoarConfig, run_path: Path) -> dict:
    """Train the baselines, evaluate every method, write and print the summary."""
    task = build_task(cfg.data.task)
    test_sets = {"hard_test": resolve_problems(cfg.data.hard_test)}
    test_sets.update({Path(source).stem: resolve_problems(source) for source in cfg.data.ood_test})
    promoted = read_jsonl(run_path / "promoted_questions.jsonl")

    models: dict[str, str] = {"base": resolve_model(cfg.model.student)}
    notes: dict[str, str] = {}
    if "hard_only" in cfg.evaluation.after_run:
        models["Hard-Only"] = _train_student(cfg, run_path, "Hard-Only", "hard_only", resolve_problems(cfg.data.hard_train))
    if "oracle" in cfg.evaluation.after_run:
        models["Oracle"] = _train_student(cfg, run_path, "Oracle", "oracle", resolve_problems(cfg.data.full_train))
    models["SOAR-PS"] = str(baseline_student_dir(run_path) or models["base"])
    if not promoted:
        notes["SOAR-PS"] = "no promotion: the base student"
    if "pq" in cfg.evaluation.after_run:
        if promoted:
            pq = [Problem(f"pq-{row['step']}-{i}", pair["question"], pair["answer"])
                  for row in promoted for i, pair in enumerate(row["pairs"])]
            models["SOAR-PQ"] = _train_on_synthetic(cfg, run_path, "SOAR-PQ", pq)
        else:
            notes["SOAR-PQ"] = "no promotion, no promoted questions: not trained"
    if "teacher" in cfg.evaluation.after_run:
        questions = _sample_teacher(cfg, run_path, task)
        models["SOAR-T"] = _train_on_synthetic(cfg, run_path, "SOAR-T", questions)

    results = _evaluate_methods(cfg, run_path, models, test_sets)

    curves = plot_soar_curves(read_jsonl(run_path / "metrics.jsonl"), cfg.meta.tau, run_path / "plots", cfg.run.name)
    summary = {
        "test_sets": {name: len(problems) for name, problems in test_sets.items()},
        "samples": settings.samples,
        "pass_at_k": {method: {name: {str(k): v for k, v in table.items()} for name, table in by_set.items()}
                      for method, by_set in results.items()},
        "models": models,
        "notes": notes,
        "promotions": [{"step": row["step"], "reward": row["reward"]} for row in promoted],
        "plots": [str(curves)],
    }
    (run_path / "eval" / "final.json").write_text(json.dumps(summary, indent=2) + "\n")
    report = format_summary(summary, promoted, settings.ks)
    (run_path / "eval" / "final.md").write_text(report)
    print(report, file=terminal_out())
    return summary


def _evaluate_methods(cfg: SoarConfig, run_path: Path, models: dict[str, str],
                      test_sets: dict[str, list[Problem]]) -> dict[str, dict]:
    """pass@k of every method's model into run_path/eval/<method>, on engines over all the
    cluster's GPUs (pools.cluster_gpus), with one progress bar over every method's samples.
    A method whose model is another's (SOAR-PS without a promotion is the base student) is not
    sampled twice. An evaluation folder of a model since retrained is started over."""
    settings = EvalSettings.from_config(cfg)
    distinct: dict[str, str] = {}  # model -> the first method that uses it
    for method, model_dir in models.items():
        distinct.setdefault(model_dir, method)
    total = len(distinct) * evaluation_size(test_sets, settings)
    print(f"evaluating {', '.join(distinct.values())}: {settings.samples} samples per problem of "
          f"{', '.join(f'{name} ({len(p)})' for name, p in test_sets.items())} -> {run_path / 'eval'}",
          file=terminal_out(), flush=True)
    by_model: dict[str, dict] = {}
    first = next(iter(distinct))
    # Every method's model is the base student fine-tuned: one set of engines reloads each in turn.
    with progress_bar(total, 0, "final evaluation", disable=not cfg.logging.progress_bar) as bar, \
            SamplingService(first, cfg.data.task, settings.dtype, settings.max_model_len,
                            gpus=cfg.pools.cluster_gpus, backend=cfg.backend) as service:
        for model_dir, method in distinct.items():
            service.load_model(model_dir)
            by_model[model_dir] = evaluate_model(service, test_sets, settings, run_path / "eval" / _slug(method),
                                                 bar=bar, replace_other=True)
    return {method: by_model[model_dir] for method, model_dir in models.items()}


def format_summary(summary: dict, promoted: list[dict], ks: tuple[int, ...]) -> str:
    """The markdown the run ends with: pass@k per method and test set, promotions, examples."""
    lines = []
    for name, size in summary["test_sets"].items():
        lines += [f"### {name}: pass@k (%), {size} problems, {summary['samples']} samples each", ""]
        lines.append("| method | " + " | ".join(f"pass@{k}" for k in ks) + " |")
        lines.append("|---|" + "---:|" * len(ks))
        for method in METHODS:
            if method in summary["pass_at_k"]:
                table = summary["pass_at_k"][method][name]
                note = f" ({summary['notes'][method]})" if method in summary["notes"] else ""
                lines.append(f"| {method}{note} | " + " | ".join(f"{100 * table[str(k)]:.1f}" for k in ks) + " |")
            elif method in summary["notes"]:
                lines.append(f"| {method} ({summary['notes'][method]}) |" + " - |" * len(ks))
        lines.append("")
    steps = ", ".join(f"{p['step']} (reward {p['reward']:+.3f})" for p in summary["promotions"]) or "none"
    lines += [f"Promotions: {len(summary['promotions'])} at steps {steps}", ""]
    if promoted:
        last = promoted[-1]
        lines.append(f"Promoted questions of step {last['step']} (first {SHOWN_PROMOTED_QUESTIONS} of {len(last['pairs'])}):")
        lines += [f"- `{pair['question']}` -> `{pair['answer']}`" for pair in last["pairs"][:SHOWN_PROMOTED_QUESTIONS]]
        lines.append("")
    lines += [f"Plots: {', '.join(summary['plots'])}", ""]
    return "\n".join(lines)


def _train_student(cfg: SoarConfig, run_path: Path, method: str, name: str, problems: list[Problem],
                   model: str | None = None, steps: int | None = None, stage: str | None = None) -> str:
    """A fresh student trained by vanilla RLVR in run_path/baselines/<name>; its HF folder. Its
    run directory records `method` (rlvr.METHOD_FILE), and meta.mode=oracle for the Oracle."""
    sub = derive_config(cfg, {
        "run.output_dir": str(run_path / "baselines"),
        "run.name": name,
        "run.overwrite": True,
        "run.resume": False,
        "meta.mode": "oracle" if method == "Oracle" else "hard_only",
        "meta.rlvr_steps": steps or cfg.meta.rlvr_steps,
        "model.student": model or cfg.model.student,
        "evaluation.after_run": [],
    })
    log.info("training the %s student: %d RLVR steps", name, sub.meta.rlvr_steps)
    run_dir = run_rlvr(sub, problems, method=method, stage=stage)
    return str(run_dir.checkpoints / "student")


def _train_on_synthetic(cfg: SoarConfig, run_path: Path, method: str, synthetic: list[Problem]) -> str:
    """A fresh student trained on synthetic questions and the hard train split, in the configured order."""
    hard_train = resolve_problems(cfg.data.hard_train)
    name = _slug(method)
    if cfg.evaluation.synthetic_order == "mixed":
        return _train_student(cfg, run_path, method, name, synthetic + hard_train)  # run_rlvr shuffles
    first = max(1, cfg.meta.rlvr_steps // 2)
    stage_one = _train_student(cfg, run_path, method, f"{name}_stage1", synthetic, steps=first,
                               stage="1 of 2: the synthetic questions")
    return _train_student(cfg, run_path, method, name, hard_train, model=stage_one,
                          steps=max(1, cfg.meta.rlvr_steps - first), stage="2 of 2: the hard train split")


def _sample_teacher(cfg: SoarConfig, run_path: Path, task) -> list[Problem]:
    """Valid (question, answer) pairs from the run's final teacher, one per prompt of the budget."""
    from soar_orl.eval.sampling import generate, start_engine, stop_engine
    from soar_orl.teacher.parser import QAPair

    saved = run_path / "checkpoints" / "teacher"
    teacher_dir = saved if (saved / "config.json").exists() else resolve_model(cfg.model.teacher)
    wanted = prompt_budget(cfg)
    llm = start_engine(teacher_dir, cfg.model.dtype, cfg.model.max_model_len, cfg.evaluation.seed)
    try:
        pairs: list[QAPair] = []
        for _ in range(cfg.teacher.max_attempts_factor):
            texts = generate(llm, [cfg.teacher.instruction or task.teacher_prompt()], wanted,
                             cfg.teacher.temperature, cfg.teacher.max_new_tokens)[0]
            pairs += [pair for pair in map(task.parse_teacher_output, texts) if isinstance(pair, QAPair)]
            if len(pairs) >= wanted:
                break
    finally:
        stop_engine(llm)
    if not pairs:
        raise RuntimeError(f"the teacher in {teacher_dir} wrote no valid question in "
                           f"{cfg.teacher.max_attempts_factor * wanted} samples")
    log.info("SOAR-T: %d valid teacher questions from %s", min(len(pairs), wanted), teacher_dir)
    return [Problem(f"t-{i}", pair.question, pair.answer) for i, pair in enumerate(pairs[:wanted])]


def _slug(method: str) -> str:
    return method.lower().replace("-", "_")

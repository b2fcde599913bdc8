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
from soar_orl.eval.plots import plot_soar_curves
from soar_orl.eval.sampling import SamplingService
from soar_orl.eval.shards import progress_bar
from soar_orl.files import read_jsonl
from soar_orl.meta.promotion import PQEntry, promoted_problems
from soar_orl.meta.rlvr import prompt_budget, run_rlvr
from soar_orl.meta.run_dir import baseline_student_dir
from soar_orl.methods import BASE, HARD_ONLY, METHODS, ORACLE, SOAR_PQ, SOAR_PS, SOAR_T, Method
from soar_orl.resolve import resolve_model, resolve_problems
from soar_orl.tasks import build_task
from soar_orl.tasks.base import Problem
from soar_orl.teacher.sampling import RejectionSamplingError, rejection_sample

log = logging.getLogger("soar")

SHOWN_PROMOTED_QUESTIONS = 5


def run_comparison(cfg: SoarConfig, run_path: Path) -> dict:
    """Train the baselines, evaluate every method, write and print the summary."""
    task = build_task(cfg.data.task)
    test_sets = {"hard_test": resolve_problems(cfg.data.hard_test)}
    test_sets.update({Path(source).stem: resolve_problems(source) for source in cfg.data.ood_test})
    promoted = read_jsonl(run_path / "promoted_questions.jsonl")

    after_run = cfg.evaluation.after_run
    models: dict[str, str] = {BASE.name: resolve_model(cfg.model.student)}
    notes: dict[str, str] = {}
    if HARD_ONLY.after_run in after_run:
        models[HARD_ONLY.name] = _train_student(cfg, run_path, HARD_ONLY, HARD_ONLY.slug,
                                                resolve_problems(cfg.data.hard_train))
    if ORACLE.after_run in after_run:
        models[ORACLE.name] = _train_student(cfg, run_path, ORACLE, ORACLE.slug, resolve_problems(cfg.data.full_train))
    models[SOAR_PS.name] = str(baseline_student_dir(run_path) or models[BASE.name])
    if not promoted:
        notes[SOAR_PS.name] = "no promotion: the base student"
    if SOAR_PQ.after_run in after_run:
        if promoted:
            pq = promoted_problems([PQEntry.from_row(row) for row in promoted])
            models[SOAR_PQ.name] = _train_on_synthetic(cfg, run_path, SOAR_PQ, pq)
        else:
            notes[SOAR_PQ.name] = "no promotion, no promoted questions: not trained"
    if SOAR_T.after_run in after_run:
        questions = _sample_teacher(cfg, run_path, task)
        models[SOAR_T.name] = _train_on_synthetic(cfg, run_path, SOAR_T, questions)

    settings = EvalSettings.from_config(cfg)
    results = _evaluate_methods(cfg, run_path, models, test_sets, settings)

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
                      test_sets: dict[str, list[Problem]], settings: EvalSettings) -> dict[str, dict]:
    """pass@k of every method's model into run_path/eval/<method>, on engines over all the
    cluster's GPUs (pools.cluster_gpus), with one progress bar over every method's samples.
    A method whose model is another's (SOAR-PS without a promotion is the base student) is not
    sampled twice. An evaluation folder of a model since retrained is started over."""
    distinct: dict[str, str] = {}  # model -> the first method that uses it
    for method, model_dir in models.items():
        distinct.setdefault(model_dir, method)
    total = len(distinct) * evaluation_size(test_sets, settings)
    print(f"evaluating {', '.join(distinct.values())}: {settings.samples} samples per problem of "
          f"{', '.join(f'{name} ({len(p)})' for name, p in test_sets.items())} -> {run_path / 'eval'}",
          file=terminal_out(), flush=True)
    by_model: dict[str, dict] = {}
    slugs = {method.name: method.slug for method in METHODS}
    first = next(iter(distinct))
    # Every method's model is the base student fine-tuned: one set of engines reloads each in turn.
    with progress_bar(total, 0, "final evaluation", disable=not cfg.logging.progress_bar) as bar, \
            SamplingService(first, cfg.data.task, settings.dtype, settings.max_model_len,
                            gpus=cfg.pools.cluster_gpus, backend=cfg.backend) as service:
        for model_dir, method in distinct.items():
            service.load_model(model_dir)
            by_model[model_dir] = evaluate_model(service, test_sets, settings, run_path / "eval" / slugs[method],
                                                 bar=bar, replace_other=True)
    return {method: by_model[model_dir] for method, model_dir in models.items()}


def format_summary(summary: dict, promoted: list[dict], ks: tuple[int, ...]) -> str:
    """The markdown the run ends with: pass@k per method and test set, promotions, examples."""
    lines = []
    for name, size in summary["test_sets"].items():
        lines += [f"### {name}: pass@k (%), {size} problems, {summary['samples']} samples each", ""]
        lines.append("| method | " + " | ".join(f"pass@{k}" for k in ks) + " |")
        lines.append("|---|" + "---:|" * len(ks))
        for method in (method.name for method in METHODS):
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


def _train_student(cfg: SoarConfig, run_path: Path, method: Method, name: str, problems: list[Problem],
                   model: str | None = None, steps: int | None = None, stage: str | None = None) -> str:
    """A fresh student trained by vanilla RLVR in run_path/baselines/<name>; its HF folder. Its
    run directory records the method's name (rlvr.METHOD_FILE), and meta.mode=oracle for the Oracle."""
    sub = rlvr_student_config(cfg, run_path, method, name, model, steps)
    log.info("training the %s student: %d RLVR steps", name, sub.meta.rlvr_steps)
    run_dir = run_rlvr(sub, problems, method=method.name, stage=stage)
    return str(run_dir.checkpoints / "student")


def rlvr_student_config(cfg: SoarConfig, run_path: Path, method: Method, name: str,
                        model: str | None = None, steps: int | None = None) -> SoarConfig:
    """The recipe of a comparison student's RLVR run: the SOAR recipe's student settings, the
    method's mode, full fine-tuning."""
    return derive_config(cfg, {
        "run.output_dir": str(run_path / "baselines"),
        "run.name": name,
        "run.overwrite": True,
        "run.resume": False,
        "meta.mode": (ORACLE if method == ORACLE else HARD_ONLY).after_run,
        "meta.rlvr_steps": steps or cfg.meta.rlvr_steps,
        "model.student": model or cfg.model.student,
        "evaluation.after_run": [],
        # OpenRLHF's trainer fine-tunes all weights, also after a run with LoRA inner students.
        "student.lora.rank": 0,
        "pools.students_per_worker": 1,
    })


def _train_on_synthetic(cfg: SoarConfig, run_path: Path, method: Method, synthetic: list[Problem]) -> str:
    """A fresh student trained on synthetic questions and the hard train split, in the configured order."""
    hard_train = resolve_problems(cfg.data.hard_train)
    name = method.slug
    if cfg.evaluation.synthetic_order == "mixed":
        return _train_student(cfg, run_path, method, name, synthetic + hard_train)  # run_rlvr shuffles
    first = max(1, cfg.meta.rlvr_steps // 2)
    stage_one = _train_student(cfg, run_path, method, f"{name}_stage1", synthetic, steps=first,
                               stage="1 of 2: the synthetic questions")
    return _train_student(cfg, run_path, method, name, hard_train, model=stage_one,
                          steps=max(1, cfg.meta.rlvr_steps - first), stage="2 of 2: the hard train split")


def _sample_teacher(cfg: SoarConfig, run_path: Path, task) -> list[Problem]:
    """Valid (question, answer) pairs from the run's final teacher, one per prompt of the budget
    (fewer if the teacher.max_attempts_factor budget runs out first, but at least one)."""
    from soar_orl.eval.sampling import generate, start_engine, stop_engine

    saved = run_path / "checkpoints" / "teacher"
    teacher_dir = saved if (saved / "config.json").exists() else resolve_model(cfg.model.teacher)
    wanted = prompt_budget(cfg)
    instruction = cfg.teacher.instruction or task.teacher_prompt()
    llm = start_engine(teacher_dir, cfg.model.dtype, cfg.model.max_model_len, cfg.evaluation.seed)
    try:
        pairs = rejection_sample(
            lambda k: generate(llm, [instruction], k, cfg.teacher.temperature, cfg.teacher.max_new_tokens)[0],
            task.parse_teacher_output, wanted, cfg.teacher.max_attempts_factor,
        ).pairs
    except RejectionSamplingError as short:
        if not short.pairs:
            raise RuntimeError(f"the teacher in {teacher_dir} wrote no valid question: {short}") from None
        pairs = short.pairs
    finally:
        stop_engine(llm)
    log.info("%s: %d valid teacher questions from %s", SOAR_T.name, min(len(pairs), wanted), teacher_dir)
    return [Problem(f"t-{i}", pair.question, pair.answer) for i, pair in enumerate(pairs[:wanted])]


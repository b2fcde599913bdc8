"""What a teacher of the arithmetic world writes: valid rate, band mix, right answers per band.

    bash run.sh python scripts/arith_teacher_stats.py [SAMPLES] [OUT_DIR] [STEPS LR]

Samples the base teacher (`builtin:arith`), the pretrained one (`builtin:arith-teacher`,
tasks/arith_model.py TeacherSettings) and the units-first base model (`builtin:arith-lsd`, its
answers read in its own order) SAMPLES times each (default 512) at temperature 1 with the
quickstart's teacher budget of 64 tokens, parses every output with the task's teacher parser
(eval/arith_hard.py teacher_stats) and prints one markdown table per teacher. With OUT_DIR it
also writes each teacher's valid pairs as probe datasets of 16 rows (`<name>_<i>.jsonl`, the
probe's format, meta/probe.write_dataset), in sampling order, for `soar probe --datasets`.
With STEPS and LR it measures, in place of those two, the pretrained teacher built with that many
steps at that peak lr (every other TeacherSettings field the default; cached under its own hash,
built first if needed): RESULTS.md, "Longer builds".
"""

from __future__ import annotations

import sys
from pathlib import Path

from soar_orl.eval.arith_hard import TEACHER_MAX_TOKENS, teacher_stats
from soar_orl.eval.sampling import generate, start_engine, stop_engine
from soar_orl.formats import QAPair
from soar_orl.meta.probe import write_dataset
from soar_orl.resolve import resolve_model
from soar_orl.tasks import build_task, builtin_world
from soar_orl.tasks.arith_model import TeacherSettings, teacher_model_dir

TEACHERS = {"base": "builtin:arith", "pretrained": "builtin:arith-teacher", "units_first": "builtin:arith-lsd"}
DATASETS, N = 3, 16


def table(name: str, stats) -> str:
    written = sum(n for n, _ in stats.bands.values())
    lines = [f"{name}: {stats.samples} samples, {stats.valid_rate:.1%} valid, "
             f"{stats.correct_rate:.1%} valid with the right answer",
             "", "| band | written | share of sums | right | right share |", "|---|---:|---:|---:|---:|"]
    for band, (n, right) in stats.bands.items():
        lines.append(f"| {band} | {n} | {n / written:.1%} | {right} | {right / n:.0%} |")
    return "\n".join(lines) + "\n"


def main(samples: int, out: Path | None, teachers: dict[str, tuple[Path, str]]) -> None:
    """`teachers`: name -> (model folder, the task whose order it answers in)."""
    for name, (folder, task_name) in teachers.items():
        task = build_task(task_name)
        llm = start_engine(folder, seed=0)
        try:
            print(table(f"{name} ({folder})", teacher_stats(llm, task, samples, TEACHER_MAX_TOKENS)))
            if out is not None:
                texts = generate(llm, [task.teacher_prompt()], 4 * DATASETS * N, 1.0, TEACHER_MAX_TOKENS)[0]
                pairs = [p for p in map(task.parse_teacher_output, texts) if isinstance(p, QAPair)]
                out.mkdir(parents=True, exist_ok=True)
                for i in range(DATASETS):
                    right = write_dataset(out / f"{name}_{i}.jsonl", pairs[i * N:(i + 1) * N], task)
                    print(f"{out / name}_{i}.jsonl: {N} rows, {right:.0%} right labels")
        finally:
            stop_engine(llm)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 4:
        steps, lr = int(args[2]), float(args[3])
        teachers = {f"pretrained-{steps}": (teacher_model_dir(TeacherSettings(steps=steps, lr=lr)), "arith")}
    elif len(args) <= 2:
        teachers = {name: (resolve_model(model), builtin_world(model)) for name, model in TEACHERS.items()}
    else:
        sys.exit(__doc__)
    main(int(args[0]) if args else 512, Path(args[1]) if len(args) > 1 else None, teachers)

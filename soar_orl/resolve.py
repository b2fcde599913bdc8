"""Recipe names -> local paths: models and problem sets, including the embedded `builtin:` ones.

Models: `builtin:arith` is the arithmetic world's base model (pretrained on first use, then
loaded from the cache), `builtin:arith-lsd` the same world's model answering units first (task
`arith-lsd`, tasks/arith.py), `builtin:arith-teacher` that model continued on teacher examples with
right answers (tasks/arith_model.py TeacherSettings; a teacher only, the student stays
`builtin:arith`); `builtin:smollm2` is SmolLM2-135M-Instruct (soar_orl/pretrained.py).
Problem sets: `builtin:arith/hard_train` and `builtin:arith/hard_test` are the arithmetic world's
fail@k split, `builtin:arith/full_train` everything but its hard test split; `edge_train`,
`edge_test` and `edge_full_train` the same for its split just past the edge (eval/arith_hard.py);
`builtin:arith-lsd/NAME` the same sets filtered with `builtin:arith-lsd`.
`builtin:walk` is the walk world's base model (tasks/walk_model.py), `builtin:walk-teacher` that
model continued on teacher examples with true walks (a teacher only), `builtin:walk/hard_train`,
`hard_test` and `full_train` its fail@k split and everything but its test half (eval/walk_hard.py).
Any other value is a local Hugging Face folder / JSONL (or .jsonl.gz) / Parquet path or a hub name.
"""

from __future__ import annotations

from soar_orl.tasks.base import Problem
from soar_orl.tasks.problems import load_problems

BUILTIN = "builtin:"


def resolve_model(name: str) -> str:
    if not name.startswith(BUILTIN):
        return name
    from soar_orl.tasks.arith_model import WORLDS, base_model_dir, teacher_model_dir

    world = name.removeprefix(BUILTIN)
    if world in WORLDS:
        return str(base_model_dir(WORLDS[world]))
    if world == "arith-teacher":
        return str(teacher_model_dir())
    if world in ("walk", "walk-teacher"):
        from soar_orl.tasks import walk_model

        return str(walk_model.base_model_dir() if world == "walk" else walk_model.teacher_model_dir())
    if world == "smollm2":
        from soar_orl.pretrained import smollm2_dir

        return str(smollm2_dir())
    known = [f"{BUILTIN}{world}" for world in [*WORLDS, "arith-teacher", "walk", "walk-teacher", "smollm2"]]
    raise ValueError(f"unknown built-in model {name!r} (known: {', '.join(known)})")


def resolve_problems(source: str) -> list[Problem]:
    if not source.startswith(BUILTIN):
        return load_problems(source)
    from soar_orl.eval.arith_hard import BUILTIN_SETS, builtin_problem_set
    from soar_orl.tasks.arith_model import WORLDS

    from soar_orl.eval import walk_hard

    world, _, split = source.removeprefix(BUILTIN).partition("/")
    if world in WORLDS and split in BUILTIN_SETS:
        return builtin_problem_set(world, split)
    if world == "walk" and split in walk_hard.BUILTIN_SETS:
        return walk_hard.builtin_problem_set(split)
    known = ", ".join([*(f"{BUILTIN}{world}/{name}" for world in WORLDS for name in BUILTIN_SETS),
                       *(f"{BUILTIN}walk/{name}" for name in walk_hard.BUILTIN_SETS)])
    raise ValueError(f"unknown built-in problem set {source!r} (known: {known})")

"""Tasks: a problem source, the prompt formats of both roles, and an answer verifier (see base.Task)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from soar_orl.tasks.base import Task


# `data.task` values (config.py DataConfig.task lists the same): the arithmetic tasks differ
# only in the order their answers are written (tasks/arith.py).
ARITH_TASKS = {"arith": "msd", "arith-lsd": "lsd"}
TASK_NAMES = ("math", *ARITH_TASKS, "walk")


def build_task(name: str) -> Task:
    """The task named by `data.task` in a recipe, with its default parameters."""
    if name == "math":
        from soar_orl.tasks.math import MathTask

        return MathTask()
    if name in ARITH_TASKS:
        from soar_orl.tasks.arith import ArithTask

        return ArithTask(answer_order=ARITH_TASKS[name])
    if name == "walk":
        from soar_orl.tasks.walk import WalkTask

        return WalkTask()
    raise ValueError(f"unknown task {name!r} (known: {', '.join(TASK_NAMES)})")


def builtin_world(name: str) -> str | None:
    """The task a built-in model or problem set belongs to, e.g. `arith-lsd` for
    `builtin:arith-lsd/edge_train` (an arithmetic task answers in its own order), `walk` for
    `builtin:walk/hard_train`; None for anything else."""
    if not name.startswith("builtin:"):
        return None
    world = name.removeprefix("builtin:").partition("/")[0]
    world = {"arith-teacher": "arith", "walk-teacher": "walk"}.get(world, world)
    return world if world in (*ARITH_TASKS, "walk") else None

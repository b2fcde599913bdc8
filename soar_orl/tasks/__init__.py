"""Tasks: a problem source, the prompt formats of both roles, and an answer verifier (see base.Task)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from soar_orl.tasks.base import Task


def build_task(name: str) -> Task:
    """The task named by `data.task` in a recipe, with its default parameters."""
    if name == "math":
        from soar_orl.tasks.math import MathTask

        return MathTask()
    if name == "arith":
        from soar_orl.tasks.arith import ArithTask

        return ArithTask()
    raise ValueError(f"unknown task {name!r} (known: math, arith)")

"""The methods a SOAR run is compared with, in the order every table lists them. A leaf.

Each method has one display name (tables, eval/final.json), the `evaluation.after_run` key that
asks for it (None: always evaluated) and a slug, its folder under a run's `eval/` and
`baselines/`. The RLVR baselines' keys are also their `meta.mode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Method:
    name: str
    """Display name, e.g. "SOAR-T"."""
    after_run: str | None
    """Its `evaluation.after_run` key, e.g. "teacher"; None for the two always evaluated."""
    teacher_free: bool
    """Does not depend on the teacher, so `soar report` pools it over the runs of every variant."""

    @property
    def slug(self) -> str:
        """Its folder name, e.g. "soar_t"."""
        return self.name.lower().replace("-", "_")


BASE = Method("base", None, teacher_free=True)
HARD_ONLY = Method("Hard-Only", "hard_only", teacher_free=True)
ORACLE = Method("Oracle", "oracle", teacher_free=True)
SOAR_PS = Method("SOAR-PS", None, teacher_free=False)
SOAR_PQ = Method("SOAR-PQ", "pq", teacher_free=False)
SOAR_T = Method("SOAR-T", "teacher", teacher_free=False)
METHODS = (BASE, HARD_ONLY, ORACLE, SOAR_PS, SOAR_PQ, SOAR_T)

# Every after_run method trains a fresh student by RLVR with the budget meta.rlvr_steps.
AFTER_RUN_KEYS = tuple(method.after_run for method in METHODS if method.after_run)
AfterRunKey = Literal[AFTER_RUN_KEYS]  # type: ignore[valid-type]  # the keys above, for pydantic


def method_of_mode(mode: str) -> Method:
    """The RLVR baseline that `meta.mode` `hard_only` or `oracle` runs."""
    return next(method for method in (HARD_ONLY, ORACLE) if method.after_run == mode)

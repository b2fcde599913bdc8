from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from soar_orl.config import load_config
from soar_orl.meta.rlvr import budget_order, real_training_set
from soar_orl.tasks.base import Problem

PROBLEMS = [Problem(f"p{i}", f"{i}+1", str(i + 1)) for i in range(10)]


@pytest.mark.parametrize("count", [1, 7, 10, 25, 100])
def test_budget_is_exact_and_spreads_evenly(count: int) -> None:
    order = budget_order(PROBLEMS, count, seed=0)
    assert len(order) == count
    uses = Counter(p.id for p in order)
    # Whole passes over the set, then part of one: no problem is used twice before all are used once.
    assert max(uses.values()) - min(uses.get(p.id, 0) for p in PROBLEMS) <= 1


def test_budget_passes_are_reshuffled_and_seeded() -> None:
    order = budget_order(PROBLEMS, 30, seed=0)
    passes = [[p.id for p in order[i:i + 10]] for i in (0, 10, 20)]
    assert all(sorted(ids) == sorted(p.id for p in PROBLEMS) for ids in passes)
    assert len({tuple(ids) for ids in passes}) > 1
    assert budget_order(PROBLEMS, 30, seed=0) == order
    assert budget_order(PROBLEMS, 30, seed=1) != order


def test_budget_needs_problems() -> None:
    with pytest.raises(ValueError, match="no problems"):
        budget_order([], 4, seed=0)


RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_hard_only_trains_on_the_hard_split_and_the_oracle_on_the_full_training_set() -> None:
    hard_only, oracle = (load_config(RECIPES / f"cpu_{mode}.yaml") for mode in ("hard_only", "oracle"))
    assert real_training_set(hard_only) == hard_only.data.hard_train
    assert real_training_set(oracle) == oracle.data.full_train != oracle.data.hard_train

"""fail@k selection and the seeded, order-independent 50/50 split."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soar_orl.eval.splits import HardSplit, fail_at_k, hard_split, split_in_half


def test_fail_at_k_keeps_the_never_solved() -> None:
    assert fail_at_k({"b": 0, "a": 0, "c": 3, "d": 128}, k=128) == ["a", "b"]
    with pytest.raises(ValueError, match="must lie in"):
        fail_at_k({"a": 129}, k=128)


def test_split_is_pinned() -> None:
    """A golden value: the split must not change between versions, machines or runs."""
    split = split_in_half([f"p{i}" for i in range(8)], seed=0)
    assert split == HardSplit(train=("p1", "p2", "p3", "p5"), test=("p0", "p4", "p6", "p7"))


@given(st.sets(st.text(max_size=6), max_size=40), st.integers(0, 2**32), st.randoms())
def test_split_halves_and_ignores_input_order(ids: set[str], seed: int, rng: random.Random) -> None:
    ordered = sorted(ids)
    shuffled = list(ids)
    rng.shuffle(shuffled)
    split = split_in_half(ordered, seed)
    assert split == split_in_half(shuffled, seed)
    assert len(split.train) == len(ids) // 2 and len(split.test) == len(ids) - len(ids) // 2
    assert set(split.train) | set(split.test) == ids and not set(split.train) & set(split.test)


def test_seeds_give_different_splits() -> None:
    ids = [str(i) for i in range(100)]
    assert split_in_half(ids, seed=0) != split_in_half(ids, seed=1)


def test_hard_split_and_duplicates() -> None:
    counts = {f"p{i}": (0 if i % 3 else 2) for i in range(9)}
    split = hard_split(counts, k=4, seed=0)
    assert sorted(split.train + split.test) == [f"p{i}" for i in range(9) if i % 3]
    with pytest.raises(ValueError, match="unique"):
        split_in_half(["a", "a"], seed=0)

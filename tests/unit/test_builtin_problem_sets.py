"""The arithmetic world's built-in problem sets load from the committed artifacts, without an engine."""

from __future__ import annotations

import pytest

import soar_orl.eval.arith_hard as arith_hard
from soar_orl.resolve import resolve_problems


@pytest.fixture
def no_engine(monkeypatch, tmp_path):
    """A clean cache (as on a fresh clone) and no vLLM: a set that is not committed would fail here."""
    monkeypatch.setenv("SOAR_ORL_CACHE", str(tmp_path))

    def refuse(*args, **kwargs):
        raise AssertionError("a built-in problem set was rebuilt instead of loaded from artifacts/")

    monkeypatch.setattr(arith_hard, "start_engine", refuse)


def test_the_edge_split_is_committed_and_holds_3_plus_2_sums_solved_0_of_k(no_engine) -> None:
    train, test = resolve_problems("builtin:arith/edge_train"), resolve_problems("builtin:arith/edge_test")
    full = resolve_problems("builtin:arith/edge_full_train")
    assert len(train) >= 128 and len(test) >= 128  # a Q_R of data.q_r_size = 128 fits
    assert {p.metadata["band"] for p in [*train, *test, *full]} == {"3,2"}
    test_ids = {p.id for p in test}
    assert not test_ids & {p.id for p in train}
    assert not test_ids & {p.id for p in full}
    assert {p.id for p in train} < {p.id for p in full}  # the Oracle's set holds the hard train split
    assert len(full) == len(arith_hard.hard_pool(arith_hard.EDGE_SPLIT)) - len(test)


def test_the_default_split_keeps_its_names(no_engine) -> None:
    train = resolve_problems("builtin:arith/hard_train")
    assert {p.metadata["band"] for p in train} == {b.name for b in arith_hard.HARD_BANDS}


def test_an_unknown_set_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="builtin:arith/edge_train"):
        resolve_problems("builtin:arith/edge_validation")


def test_the_walk_split_is_committed_and_holds_long_walks_solved_0_of_k(monkeypatch, tmp_path) -> None:
    from soar_orl.eval import walk_hard
    from soar_orl.tasks.walk import WalkWorld

    monkeypatch.setenv("SOAR_ORL_CACHE", str(tmp_path))
    monkeypatch.setattr(walk_hard, "start_engine", lambda *a, **k: pytest.fail("the walk split was rebuilt"))
    train, test = resolve_problems("builtin:walk/hard_train"), resolve_problems("builtin:walk/hard_test")
    full = resolve_problems("builtin:walk/full_train")
    world = WalkWorld()
    assert len(train) >= 48  # recipes/quickstart.yaml's data.q_r_size
    assert abs(len(train) - len(test)) <= 1
    assert all(p.answer == world.walk(p.problem[0], p.metadata["steps"]) for p in [*train, *test, *full])
    assert all(p.metadata["steps"] >= walk_hard.WalkSplitSettings().min_steps for p in [*train, *test])
    test_ids = {p.id for p in test}
    assert not test_ids & {p.id for p in train} and not test_ids & {p.id for p in full}
    assert {p.id for p in train} < {p.id for p in full}
    assert len(full) == 26 * world.max_steps - len(test)  # every walk of the world but the test half
    assert min(p.metadata["steps"] for p in full) == 1  # the Oracle's set holds the short walks

"""Promotion decisions, the PQ archive, and exact checkpoint round trips."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soar_orl.config import MetaConfig
from soar_orl.formats import QAPair
from soar_orl.meta.promotion import PQEntry, PromotionTracker, StateMismatchError, promoted_problems

G, R = 3, 4


def datasets(step: int) -> list[list[QAPair]]:
    return [[QAPair(f"s{step} d{k} q{i}", str(i)) for i in range(2)] for k in range(G)]


def observe(
    tracker: PromotionTracker, step: int, rewards_G: list[float], accs_GR: list[list[float]] | None = None
):
    return tracker.observe(step, rewards_G, accs_GR or [[0.1] * R for _ in range(G)], datasets(step))


def test_needs_a_full_window_then_promotes_the_best_dataset_and_median_run() -> None:
    tracker = PromotionTracker(MetaConfig(window=3, tau=0.01))
    assert observe(tracker, 0, [0.2, 0.2, 0.2]).promoted is None  # a big first step alone cannot promote
    assert observe(tracker, 1, [0.0, 0.0, 0.0]).moving_average is None
    accs = [[0.0] * R, [0.30, 0.10, 0.40, 0.20], [0.0] * R]
    decision = observe(tracker, 2, [0.0, 0.06, -0.03], accs)
    assert decision.moving_average == pytest.approx((0.2 + 0.0 + 0.01) / 3)
    entry = decision.promoted
    assert entry is not None
    assert (entry.step, entry.dataset_index, entry.reward) == (2, 1, 0.06)
    # Accuracies sorted: 0.10 (run 1), 0.20 (run 3), 0.30 (run 0), 0.40 (run 2); lower median = run 3.
    assert (entry.run_index, entry.student_accuracy) == (3, 0.20)
    assert entry.pairs == tuple(datasets(2)[1])
    assert tracker.archive == [entry]
    assert decision.metrics() == {
        "promotion/teacher_reward": pytest.approx(0.01),
        "promotion/promoted": 1.0,
        "promotion/count": 1.0,
        "promotion/moving_average": pytest.approx(0.07),
    }


def test_the_average_restarts_after_a_promotion() -> None:
    tracker = PromotionTracker(MetaConfig(window=2, tau=0.01))
    observe(tracker, 0, [0.5, 0.5, 0.5])
    assert observe(tracker, 1, [0.5, 0.5, 0.5]).promoted is not None
    assert tracker.moving_average is None
    assert observe(tracker, 2, [0.5, 0.5, 0.5]).promoted is None  # stale gains do not count
    assert observe(tracker, 3, [0.5, 0.5, 0.5]).promoted is not None
    assert [entry.step for entry in tracker.archive] == [1, 3]


def test_ties_pick_the_first_best_dataset() -> None:
    tracker = PromotionTracker(MetaConfig(window=1, tau=0.0))
    assert observe(tracker, 0, [0.1, 0.3, 0.3]).promoted.dataset_index == 1


def test_bad_steps_are_refused() -> None:
    tracker = PromotionTracker(MetaConfig())
    observe(tracker, 5, [0.0] * G)
    with pytest.raises(ValueError, match="steps must increase"):
        observe(tracker, 5, [0.0] * G)
    with pytest.raises(ValueError, match="same g"):
        tracker.observe(6, [0.0] * G, [[0.1] * R] * (G - 1), datasets(6))
    with pytest.raises(ValueError, match="same r"):
        tracker.observe(6, [0.0] * G, [[0.1] * R, [0.1] * (R - 1), [0.1] * R], datasets(6))
    with pytest.raises(ValueError, match="finite"):
        tracker.observe(6, [float("nan")] * G, [[0.1] * R] * G, datasets(6))
    with pytest.raises(ValueError):
        MetaConfig(window=0)


_rewards = st.lists(st.floats(-0.2, 0.2, allow_nan=False), min_size=G, max_size=G)
_params = st.builds(MetaConfig, window=st.integers(1, 4), tau=st.floats(-0.05, 0.05))


@given(_params, st.lists(_rewards, max_size=12))
def test_never_promotes_unless_the_full_window_average_exceeds_tau(
    params: MetaConfig, steps: list
) -> None:
    tracker = PromotionTracker(params)
    window: list[float] = []
    for step, rewards_G in enumerate(steps):
        window = (window + [sum(rewards_G) / G])[-params.window :]
        decision = observe(tracker, step, rewards_G)
        full_and_above = len(window) == params.window and sum(window) / params.window > params.tau
        assert (decision.promoted is not None) == full_and_above
        if decision.promoted is not None:
            assert decision.moving_average > params.tau
            window = []


@given(_params, st.lists(_rewards, max_size=10), st.integers(0, 10), st.data())
def test_state_round_trips_through_json_exactly(params, steps: list, cut: int, data) -> None:
    """Checkpoint at any step, restore into a fresh tracker: same state, same future decisions."""
    original = PromotionTracker(params)
    for step, rewards_G in enumerate(steps[:cut]):
        observe(original, step, rewards_G)
    state = original.state_dict()
    assert json.loads(json.dumps(state)) == state
    restored = PromotionTracker(params)
    restored.load_state_dict(json.loads(json.dumps(state)))
    assert restored.state_dict() == state
    assert restored.archive == original.archive
    for step, rewards_G in enumerate(steps[cut:], start=cut):
        accs = data.draw(st.lists(st.lists(st.floats(0, 1), min_size=R, max_size=R), min_size=G, max_size=G))
        assert observe(restored, step, rewards_G, accs) == observe(original, step, rewards_G, accs)


def test_a_mismatched_state_is_refused_with_every_difference() -> None:
    tracker = PromotionTracker(MetaConfig(window=3, tau=0.01))
    observe(tracker, 0, [0.5] * G)
    state = tracker.state_dict()
    state["params"] = {"window": 5, "tau": 0.01}
    del state["last_step"]
    state["extra"] = 1
    fresh = PromotionTracker(MetaConfig(window=3, tau=0.01))
    with pytest.raises(StateMismatchError) as error:
        fresh.load_state_dict(state)
    message = str(error.value)
    assert "params.window: this tracker has 3, the state has 5" in message
    assert "missing keys ['last_step']" in message and "unexpected keys ['extra']" in message
    assert "tau" not in message  # only what differs is listed
    assert fresh.state_dict() == PromotionTracker(MetaConfig()).state_dict()  # left untouched


def test_a_state_with_a_broken_archive_entry_is_refused() -> None:
    tracker = PromotionTracker(MetaConfig(window=1, tau=0.0))
    observe(tracker, 0, [0.5] * G)
    state = tracker.state_dict()
    del state["archive"][0]["run_index"]
    with pytest.raises(StateMismatchError, match=r"archive\[0\]: missing keys \['run_index'\]"):
        PromotionTracker(MetaConfig(window=1, tau=0.0)).load_state_dict(state)
    with pytest.raises(StateMismatchError, match="expected a dict"):
        tracker.load_state_dict([])


def test_soar_pq_learns_every_promoted_pair_with_the_teachers_answer() -> None:
    rows = [PQEntry(step, 0.1, 0.2, 0, 0, tuple(QAPair(f"q{step}{i}", f"a{step}{i}") for i in range(2))).to_row()
            for step in (0, 3)]
    problems = promoted_problems([PQEntry.from_row(json.loads(json.dumps(row))) for row in rows])
    assert [(p.id, p.problem, p.answer) for p in problems] == [
        ("pq-0-0", "q00", "a00"), ("pq-0-1", "q01", "a01"), ("pq-3-0", "q30", "a30"), ("pq-3-1", "q31", "a31")]

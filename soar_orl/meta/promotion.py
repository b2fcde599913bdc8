"""Promotion of the baseline student, and the promoted-questions (PQ) archive.

Each outer step gives g dataset rewards and, per dataset, the Q_R accuracies of its r trained
students. The step's teacher reward is the mean of the g dataset rewards. When the moving
average of the teacher reward over the last `window` steps exceeds `tau`, the baseline student
is replaced by a student of the step's best dataset (the run with the median accuracy of its r
runs, so one lucky run is not promoted), and that dataset joins the PQ archive.

Choices (SOAR.md leaves them open):
- The average is only defined once `window` steps are in it, so a single lucky first step cannot
  promote.
- After a promotion the average restarts empty. Rewards are gains over the *baseline* student;
  once the baseline is replaced, the old gains say nothing about the new baseline, and keeping
  them would promote again on the next step on stale evidence.
- For even r the median run is the lower median (position (r - 1) // 2 by accuracy, ties by
  run index): an actual run, and the conservative one of the two middle runs.

Shapes: G = datasets per step, R = student runs per dataset.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from soar_orl.config import MetaConfig
from soar_orl.formats import QAPair
from soar_orl.tasks.base import Problem


@dataclass(frozen=True)
class PQEntry:
    """One promoted dataset: when, its reward, and the Q_R accuracy of the promoted student."""

    step: int
    reward: float
    student_accuracy: float
    dataset_index: int  # k in 0..g-1 within its step
    run_index: int  # which of the r student runs of X_k became the baseline
    pairs: tuple[QAPair, ...]

    def to_row(self) -> dict[str, Any]:
        """Plain JSON: a line of promoted_questions.jsonl and an entry of the tracker's state."""
        return {**asdict(self), "pairs": [asdict(pair) for pair in self.pairs]}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PQEntry:
        return cls(**{**row, "pairs": tuple(QAPair(**pair) for pair in row["pairs"])})


def promoted_problems(entries: Sequence[PQEntry]) -> list[Problem]:
    """SOAR-PQ's synthetic problems: every pair of every promoted dataset, the teacher's answer as
    its label, with an id that names its step and place."""
    return [Problem(f"pq-{entry.step}-{i}", pair.question, pair.answer)
            for entry in entries for i, pair in enumerate(entry.pairs)]


@dataclass(frozen=True)
class PromotionDecision:
    """What one outer step decided."""

    teacher_reward: float  # mean of the step's dataset rewards
    moving_average: float | None  # None until `window` steps are in the average
    promoted: PQEntry | None  # the new baseline and its dataset, if promoted this step
    num_promotions: int

    def metrics(self) -> dict[str, float]:
        metrics = {
            "promotion/teacher_reward": self.teacher_reward,
            "promotion/promoted": float(self.promoted is not None),
            "promotion/count": float(self.num_promotions),
        }
        if self.moving_average is not None:
            metrics["promotion/moving_average"] = self.moving_average
        return metrics


class StateMismatchError(ValueError):
    """A saved state that does not fit this tracker; the message lists every difference."""


class PromotionTracker:
    """Moving average, promotion decisions and the PQ archive; checkpointable as plain JSON.

    `meta.window` and `meta.tau` (config.py) are the average's window and the threshold."""

    def __init__(self, meta: MetaConfig) -> None:
        self.meta = meta
        self.archive: list[PQEntry] = []
        self._recent_rewards: deque[float] = deque(maxlen=self.meta.window)
        self._last_step: int | None = None

    @property
    def moving_average(self) -> float | None:
        if len(self._recent_rewards) < self.meta.window:
            return None
        return sum(self._recent_rewards) / self.meta.window

    def observe(
        self,
        step: int,
        rewards_G: Sequence[float],
        accs_GR: Sequence[Sequence[float]],
        datasets_G: Sequence[Sequence[QAPair]],
    ) -> PromotionDecision:
        """Record one outer step and decide whether to promote."""
        rewards, accs = _check_step(rewards_G, accs_GR, datasets_G)
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(f"step {step} observed after step {self._last_step}: steps must increase")
        self._last_step = step
        teacher_reward = sum(rewards) / len(rewards)
        self._recent_rewards.append(teacher_reward)
        average = self.moving_average
        promoted = None
        if average is not None and average > self.meta.tau:
            best = max(range(len(rewards)), key=lambda k: (rewards[k], -k))  # first best on ties
            runs = sorted(range(len(accs[best])), key=lambda i: (accs[best][i], i))
            median_run = runs[(len(runs) - 1) // 2]
            promoted = PQEntry(
                step=step,
                reward=rewards[best],
                student_accuracy=accs[best][median_run],
                dataset_index=best,
                run_index=median_run,
                pairs=tuple(datasets_G[best]),
            )
            self.archive.append(promoted)
            self._recent_rewards.clear()
        return PromotionDecision(teacher_reward, average, promoted, len(self.archive))

    # ------------------------------------------------------------------ checkpointing

    def _params(self) -> dict[str, Any]:
        return {"window": self.meta.window, "tau": self.meta.tau}

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON types only, so json.loads(json.dumps(state)) == state."""
        return {
            "params": self._params(),
            "last_step": self._last_step,
            "recent_rewards": list(self._recent_rewards),
            "archive": [entry.to_row() for entry in self.archive],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved state; refuse (listing every difference) one that does not fit."""
        problems = key_differences("state", set(self.state_dict()), state)
        if not isinstance(state, Mapping):
            raise StateMismatchError(problems[0])
        saved_params = state.get("params", {})
        for name, expected in self._params().items():
            found = (
                saved_params.get(name, "<missing>") if isinstance(saved_params, Mapping) else "<not a dict>"
            )
            if found != expected:
                problems.append(f"params.{name}: this tracker has {expected!r}, the state has {found!r}")
        recent = state.get("recent_rewards", [])
        if len(recent) > self.meta.window:
            problems.append(
                f"recent_rewards: {len(recent)} values, more than the window of {self.meta.window}"
            )
        entry_keys = {field.name for field in fields(PQEntry)}
        for index, entry in enumerate(state.get("archive", [])):
            problems += key_differences(f"archive[{index}]", entry_keys, entry)
        if problems:
            raise StateMismatchError("promotion state does not fit this tracker:\n- " + "\n- ".join(problems))
        self._last_step = state["last_step"]
        self._recent_rewards = deque(state["recent_rewards"], maxlen=self.meta.window)
        self.archive = [PQEntry.from_row(entry) for entry in state["archive"]]


def _check_step(
    rewards_G: Sequence[float], accs_GR: Sequence[Sequence[float]], datasets_G: Sequence[Sequence[QAPair]]
) -> tuple[list[float], list[list[float]]]:
    """The step's inputs as floats, after checking that their shapes agree and values are finite."""
    rewards = [float(reward) for reward in rewards_G]
    accs = [[float(acc) for acc in run_accs] for run_accs in accs_GR]
    if not rewards or len(accs) != len(rewards) or len(datasets_G) != len(rewards):
        raise ValueError(
            f"need the same g >= 1 for rewards_G ({len(rewards)}), accs_GR ({len(accs)}) "
            f"and datasets_G ({len(datasets_G)})"
        )
    if any(len(run_accs) != len(accs[0]) for run_accs in accs) or not accs[0]:
        raise ValueError(f"accs_GR must have the same r >= 1 runs per dataset, got {[len(a) for a in accs]}")
    if not all(math.isfinite(value) for value in rewards + [acc for row in accs for acc in row]):
        raise ValueError(f"rewards and accuracies must be finite, got {rewards} and {accs}")
    return rewards, accs


def key_differences(where: str, expected: set[str], found: Any) -> list[str]:
    """What keeps `found` from being a dict with exactly the `expected` keys (empty: nothing)."""
    if not isinstance(found, Mapping):
        return [f"{where}: expected a dict, found {type(found).__name__}"]
    differences = []
    if missing := sorted(expected - set(found)):
        differences.append(f"{where}: missing keys {missing}")
    if unexpected := sorted(set(found) - expected):
        differences.append(f"{where}: unexpected keys {unexpected}")
    return differences

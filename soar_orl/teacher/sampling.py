"""Rejection sampling of the teacher's g*n valid (question, answer) pairs.

SOAR resamples invalid teacher outputs until g*n are valid. Since samples are i.i.d., keeping
the first g*n valid ones in sampling order keeps an unbiased sample of the teacher's valid
outputs (dropping the surplus of the last batch does not look at their content).

The loop is pure: the caller passes `sample(k)`, which returns k raw outputs (vLLM requests,
strings, anything), and `parse(output)`, which is usually the task's teacher-output parser. It is
the one teacher sampling loop: the outer loop's step and the final comparison's SOAR-T both use it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from soar_orl.formats import QAPair, Rejection

Output = TypeVar("Output")


@dataclass(frozen=True)
class SamplingStats:
    """How the teacher's outputs fared; `rejections` has every reason, zeros included."""

    attempts: int  # raw outputs sampled
    valid: int  # valid outputs seen, including any surplus of the last batch
    rejections: dict[str, int]

    @property
    def valid_rate(self) -> float:
        return self.valid / self.attempts if self.attempts else 0.0

    def metrics(self) -> dict[str, float]:
        reasons = {f"teacher/rejected/{reason}": float(n) for reason, n in self.rejections.items()}
        return {"teacher/valid_rate": self.valid_rate, "teacher/attempts": float(self.attempts), **reasons}

    def describe(self) -> str:
        reasons = ", ".join(f"{reason}={n}" for reason, n in self.rejections.items())
        return f"{self.valid} valid of {self.attempts} sampled ({self.valid_rate:.1%}); rejections: {reasons}"


@dataclass(frozen=True)
class SamplingResult(Generic[Output]):
    """Exactly `target` accepted outputs and their pairs, in sampling order."""

    outputs: list[Output]
    pairs: list[QAPair]
    stats: SamplingStats


class RejectionSamplingError(RuntimeError):
    """The teacher did not produce enough valid outputs within the attempt budget; `pairs` are the
    valid ones it did write, in sampling order."""

    def __init__(self, target: int, cap: int, stats: SamplingStats, pairs: list[QAPair]) -> None:
        super().__init__(
            f"teacher rejection sampling gave up: needed {target} valid outputs, cap of {cap} samples "
            f"reached with {stats.describe()}"
        )
        self.stats = stats
        self.pairs = pairs


def rejection_sample(
    sample: Callable[[int], Sequence[Output]],
    parse: Callable[[Output], QAPair | Rejection],
    target: int,
    max_attempts_factor: int,
) -> SamplingResult[Output]:
    """Sample until `target` (= g*n) outputs parse, or raise RejectionSamplingError at the cap of
    `max_attempts_factor` raw outputs per output needed (`teacher.max_attempts_factor`).

    Each batch asks for the number still needed divided by the valid rate seen so far, so a
    teacher with a 50% valid rate needs about two rounds, not log2(target) of them.
    """
    if target < 1 or max_attempts_factor < 1:
        raise ValueError(f"target and max_attempts_factor must be >= 1, got {target} and {max_attempts_factor}")
    cap = max_attempts_factor * target
    accepted: list[tuple[Output, QAPair]] = []
    rejections: Counter[Rejection] = Counter()
    attempts = 0
    while len(accepted) < target and attempts < cap:
        seen_rate = 1.0 if attempts == 0 else max(len(accepted) / attempts, 1 / max_attempts_factor)
        k = min(cap - attempts, math.ceil((target - len(accepted)) / seen_rate))
        outputs = sample(k)
        if not outputs:
            raise RuntimeError(f"the teacher sampler returned no outputs when asked for {k}")
        attempts += len(outputs)
        for output in outputs:
            parsed = parse(output)
            if isinstance(parsed, Rejection):
                rejections[parsed] += 1
            else:
                accepted.append((output, parsed))
    stats = SamplingStats(
        attempts=attempts,
        valid=len(accepted),
        rejections={reason.value: rejections[reason] for reason in Rejection},
    )
    if len(accepted) < target:
        raise RejectionSamplingError(target, cap, stats, [pair for _, pair in accepted])
    kept = accepted[:target]
    return SamplingResult([output for output, _ in kept], [pair for _, pair in kept], stats)

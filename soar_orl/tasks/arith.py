"""The built-in arithmetic world: seeded problems in difficulty bands and an exact verifier.

Why this world: SOAR's claim (a teacher learns to write stepping stones towards problems the
student solves 0/k) should be visible on a laptop CPU in minutes, which a 3B model on MATH cannot
show. Here a problem is a sum of integers such as `407+58`, and its band is the digit count of
each operand. The base model (tasks/arith_model.py) learns the easy bands (up to 2 digits)
thoroughly and the edge bands (a 3-digit operand) only a little, so its competence falls off
gradually: it solves 3+1-digit sums about one time in ten and most 3+3-digit sums almost never.
The hard split keeps the edge problems it solved 0/k (eval/arith_hard.py), as fail@k keeps the
MATH problems a model never solves; the teacher's candidate stepping stones are everything it
can write in between (whether training on them reaches the hard split is what a run measures,
not something this design guarantees). Bands never shown at all (4 digits, 3 terms) are solved
0 times in thousands of samples: a character-level model trained from scratch does not
extrapolate, so those are useless to a student, and a teacher that writes them should learn not
to.

Formats (short on purpose: the model reads characters, and max_model_len is about 256):
- question: the bare expression, `407+58`;
- student prompt: `407+58=`; student answer: `\\boxed{465}`;
- teacher: the shared instruction/parser machinery with a short arithmetic template, so the
  teacher writes `<question>407+58</question> <answer>\\boxed{465}</answer>`.

Grading reads the last box and compares integers exactly. Model output is only ever matched
against `[+-]?[0-9]+`, never evaluated: `\\boxed{2+5}` is a wrong answer, not 7.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from soar_orl.formats import ParserParams, TeacherPromptParams, extract_last_boxed
from soar_orl.tasks.base import Graded, Outcome, Problem, Task
from soar_orl.tasks.verify import is_reference_text

ARITH_TOPICS = ("addition",)
# The instruction the teacher always sees; every character costs a token, so it is one line.
ARITH_TEMPLATE = "Write a new {subject} problem ({topics}) and its answer:\n{format}"
# Longest integer the verifier reads: far beyond any band, and it keeps int() cheap on hostile
# output (Python refuses to parse more than 4300 digits anyway).
MAX_ANSWER_DIGITS = 40
_INTEGER = re.compile(rf"[+-]?[0-9]{{1,{MAX_ANSWER_DIGITS}}}")
_SUM = re.compile(rf"[0-9]{{1,{MAX_ANSWER_DIGITS}}}(?:\+[0-9]{{1,{MAX_ANSWER_DIGITS}}})+")


@dataclass(frozen=True)
class Band:
    """A difficulty band: sums whose operand i has exactly `digits[i]` digits (1-digit operands
    include 0). Only addition: with subtraction as well, the same pretraining budget reached 11%
    instead of 100% on two-digit problems, and a base model that cannot do its easy bands shows
    nothing."""

    digits: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.digits) < 2 or any(d < 1 for d in self.digits):
            raise ValueError(f"a band needs at least two operands of >= 1 digit, got {self.digits}")

    @property
    def name(self) -> str:
        """Digit counts joined by commas: `3,2` is a 3-digit plus a 2-digit number."""
        return ",".join(map(str, self.digits))

    @property
    def size(self) -> int:
        """Total operand digits: the world's scalar measure of difficulty."""
        return sum(self.digits)


def _operand(rng: random.Random, digits: int) -> int:
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(low, 10**digits - 1)


def sample_expression(band: Band, rng: random.Random) -> tuple[str, int]:
    """One sum of the band, drawn from `rng`, and its value."""
    operands = [_operand(rng, d) for d in band.digits]
    return "+".join(map(str, operands)), sum(operands)


def parse_sum(text: str) -> tuple[str, ...] | None:
    """The operands (as written) of a question that is a plain sum like `12+345`, else None.
    Used to read the band of what the teacher writes; never evaluates anything else."""
    text = text.strip()
    return tuple(text.split("+")) if _SUM.fullmatch(text) else None


def band_problems(band: Band, count: int, seed: int, start: int = 0) -> list[Problem]:
    """Problems `start .. start+count-1` of a band. Problem i depends only on (seed, band, i),
    so any slice is reproducible on its own and two slices never disagree."""
    problems = []
    for index in range(start, start + count):
        # str seeds go through SHA-512 in random.seed: stable across runs and machines.
        rng = random.Random(f"arith:{seed}:{band.name}:{index}")
        text, value = sample_expression(band, rng)
        problems.append(Problem(f"{band.name}#{index}", text, str(value), {"band": band.name}))
    return problems


def student_answer(value: int) -> str:
    """The student's graded response to a problem whose value is `value`."""
    return f"\\boxed{{{value}}}"


def parse_integer(text: str) -> int | None:
    """The integer `text` spells (surrounding spaces allowed), else None. Never evaluates."""
    text = text.strip()
    return int(text) if _INTEGER.fullmatch(text) else None


class ArithTask(Task):
    """Arithmetic graded by exact integer comparison of the last boxed answer."""

    name = "arith"

    def __init__(self, prompt: TeacherPromptParams | None = None, parser: ParserParams | None = None) -> None:
        default_prompt = TeacherPromptParams(
            topics=ARITH_TOPICS, subject="arithmetic", template=ARITH_TEMPLATE
        )
        # Answers are integers of a few digits: a long question or answer is a run-on sample.
        default_parser = ParserParams(max_question_chars=64, max_answer_chars=MAX_ANSWER_DIGITS + 1)
        super().__init__(prompt or default_prompt, parser or default_parser)

    def answer_parses(self, answer: str) -> bool:
        return parse_integer(answer) is not None

    def reference_answer(self, question: str) -> str | None:
        operands = parse_sum(question)
        return None if operands is None else str(sum(map(int, operands)))

    def student_prompt(self, question: str) -> str:
        return f"{question}="

    def grade(self, response: str, label: str) -> Graded:
        """CORRECT / WRONG by exact integer comparison; NO_ANSWER without a closed box.

        A box that is not an integer is WRONG, not UNVERIFIED: here the verifier is exact, so
        `\\boxed{seven}` is decidedly not the label (and must not out-earn a wrong number).
        UNVERIFIED is left, as in the math task, for a box that is the label itself in other
        formatting (`is_reference_text`) when the label is not an integer, which the teacher
        parser and the problem generator never produce.
        """
        answer = extract_last_boxed(response)
        if answer is None:
            return Graded(Outcome.NO_ANSWER, None)
        expected = parse_integer(label)
        if expected is None:
            return Graded(Outcome.UNVERIFIED if is_reference_text(answer, label) else Outcome.WRONG, answer)
        return Graded(Outcome.CORRECT if parse_integer(answer) == expected else Outcome.WRONG, answer)

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

Two answer orders (ANSWER_ORDERS), two tasks: `arith` writes answers as usual, most significant
digit first; `arith-lsd` writes them units first (`\\boxed{564}` for 465), the order in which
a sum is computed, so a left-to-right model emits each digit after the carries it depends on.
Only what is inside the box changes: labels are always the true value (`465`), the student's
and the teacher's boxes are read in the task's order.

Grading reads the last box and compares integers exactly. Model output is only ever matched
against `[+-]?[0-9]+`, never evaluated: `\\boxed{2+5}` is a wrong answer, not 7.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from soar_orl.formats import ParserParams, QAPair, Rejection, TeacherPromptParams, extract_last_boxed
from soar_orl.tasks.base import Graded, Outcome, Problem, Task
from soar_orl.tasks.verify import is_reference_text

ARITH_TOPICS = ("addition",)
ANSWER_ORDERS = ("msd", "lsd")
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


def written_answer(value: int, order: str = "msd") -> str:
    """`value` as written inside a box in a world of `order`: `465` (msd) or `564` (lsd; a sign
    stays in front: `-564`)."""
    digits = str(abs(value))
    return ("-" if value < 0 else "") + (digits if order == "msd" else digits[::-1])


def student_answer(value: int, order: str = "msd") -> str:
    """The student's graded response to a problem whose value is `value`."""
    return f"\\boxed{{{written_answer(value, order)}}}"


def parse_integer(text: str, order: str = "msd") -> int | None:
    """The integer `text` spells in a world of `order` (surrounding spaces allowed), else None.
    Never evaluates. Units first, `0010` is 100: leading zeros of the true value cannot occur,
    trailing ones are as harmless as msd's leading zeros."""
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        return None
    if order == "lsd":
        sign = text[0] if text[0] in "+-" else ""
        text = sign + text[len(sign):][::-1]
    return int(text)


class ArithTask(Task):
    """Arithmetic graded by exact integer comparison of the last boxed answer, read in
    `answer_order` (`arith`: msd, `arith-lsd`: lsd)."""

    def __init__(
        self, prompt: TeacherPromptParams | None = None, parser: ParserParams | None = None,
        answer_order: str = "msd",
    ) -> None:
        if answer_order not in ANSWER_ORDERS:
            raise ValueError(f"answer_order must be one of {ANSWER_ORDERS}, got {answer_order!r}")
        self.answer_order = answer_order
        self.name = "arith" if answer_order == "msd" else f"arith-{answer_order}"
        default_prompt = TeacherPromptParams(
            topics=ARITH_TOPICS, subject="arithmetic", template=ARITH_TEMPLATE
        )
        # Answers are integers of a few digits: a long question or answer is a run-on sample.
        default_parser = ParserParams(max_question_chars=64, max_answer_chars=MAX_ANSWER_DIGITS + 1)
        super().__init__(prompt or default_prompt, parser or default_parser)

    def answer_parses(self, answer: str) -> bool:
        return parse_integer(answer) is not None

    def parse_teacher_output(self, text: str) -> QAPair | Rejection:
        """As Task's, with the label turned into the true value when the box is units first."""
        pair = super().parse_teacher_output(text)
        if self.answer_order == "msd" or not isinstance(pair, QAPair):
            return pair
        return QAPair(pair.question, str(parse_integer(pair.answer, self.answer_order)))

    def student_answer(self, value: int) -> str:
        """The student's graded response to a problem whose value is `value`, in this task's order."""
        return student_answer(value, self.answer_order)

    def response_for(self, label: str) -> str:
        """As Task's, the box written in this task's order (`\\boxed{564}` for 465 units first);
        a label that is not an integer is boxed as it is."""
        value = parse_integer(label)
        return super().response_for(label) if value is None else self.student_answer(value)

    def written_answer(self, value: int) -> str:
        """`value` as this task writes it inside a box (the teacher's too)."""
        return written_answer(value, self.answer_order)

    def reference_answer(self, question: str) -> str | None:
        operands = parse_sum(question)
        return None if operands is None else str(sum(map(int, operands)))

    def question_kind(self, question: str) -> str | None:
        operands = parse_sum(question)
        return None if operands is None else ",".join(str(len(a)) for a in operands)

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
        return Graded(Outcome.CORRECT if parse_integer(answer, self.answer_order) == expected else Outcome.WRONG, answer)

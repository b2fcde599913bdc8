"""What every task provides to SOAR: problems, the prompts of both roles, and a grader.

A task is a problem source (`Problem` rows), the teacher's instruction and output parser (shared
machinery, parameterised per task), the student's prompt format, and a verifier that grades a
student response against a label into an `Outcome`. The math task (tasks/math.py) and the
built-in arithmetic world implement the same interface, so the outer loop never branches on the
task.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from soar_orl.formats import (
    ParserParams,
    QAPair,
    Rejection,
    TeacherPromptParams,
    parse_teacher_output,
    teacher_instruction,
)


@dataclass(frozen=True)
class Problem:
    """One real problem of a benchmark; `answer` is the final short answer, without a box."""

    id: str
    problem: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict)


class Outcome(str, enum.Enum):
    """Grade of one student response. The reward levels follow this order (config.py student.reward)."""

    CORRECT = "correct"  # boxed answer verified equal to the label
    UNVERIFIED = "unverified"  # the box is the label in other formatting, but the verifier did not confirm it
    WRONG = "wrong"  # boxed answer not verified equal (different, unreadable, or its check timed out)
    NO_ANSWER = "no_answer"  # no (closed, non-empty) box at all


@dataclass(frozen=True)
class Graded:
    """An outcome and the answer it was decided on (None when there was no boxed answer)."""

    outcome: Outcome
    answer: str | None


class Task(abc.ABC):
    """Base class of a task. Subclasses set `name` and implement the three abstract methods."""

    name: str

    def __init__(self, prompt: TeacherPromptParams, parser: ParserParams) -> None:
        self.prompt_params = prompt
        self.parser_params = parser

    def teacher_prompt(self) -> str:
        """The fixed instruction the teacher samples from."""
        return teacher_instruction(self.prompt_params)

    def parse_teacher_output(self, text: str) -> QAPair | Rejection:
        """A (question, label) pair from one teacher sample, or why it is rejected."""
        return parse_teacher_output(text, self.parser_params, self.answer_parses)

    def grade_many(self, responses: Sequence[str], labels: Sequence[str]) -> list[Graded]:
        """Grades of paired responses and labels; override when a batch is cheaper."""
        return [self.grade(response, label) for response, label in zip(responses, labels, strict=True)]

    def response_for(self, label: str) -> str:
        """A student response that answers exactly `label` (how a true answer is checked against
        a teacher's label with the grader itself)."""
        return f"\\boxed{{{label}}}"

    def reference_answer(self, question: str) -> str | None:
        """The true answer of a question, for tasks that can compute it exactly (arith); else None.
        Lets `soar questions` measure how often the teacher's answers are right."""
        return None

    def question_kind(self, question: str) -> str | None:
        """The difficulty band a well-formed question belongs to (arith: its operand digits,
        `3,2`; walk: the noisy letters its walk crosses, `2 noisy`), for tallies of what a teacher
        writes; None for tasks without bands (math) or a malformed question."""
        return None

    @abc.abstractmethod
    def answer_parses(self, answer: str) -> bool:
        """Can this task's verifier read `answer` (the content of a teacher's box)?"""

    @abc.abstractmethod
    def student_prompt(self, question: str) -> str:
        """The student's prompt for a question (before the chat template)."""

    @abc.abstractmethod
    def grade(self, response: str, label: str) -> Graded:
        """Grade one full student response against a label."""

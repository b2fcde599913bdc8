"""The math task (MATH, HARP, OlympiadBench; their files load with tasks/problems.py).

The teacher writes problems on the MATH subjects; the student is asked for a boxed answer;
grading extracts the last box and checks it with Math-Verify in a time-limited worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from soar_orl.formats import ParserParams, TeacherPromptParams, extract_last_boxed
from soar_orl.tasks.base import Graded, Outcome, Task
from soar_orl.tasks.verify import MathVerifier, Verdict, VerifyParams, is_reference_text

MATH_TOPICS = (
    "Algebra",
    "Counting & Probability",
    "Geometry",
    "Intermediate Algebra",
    "Number Theory",
    "Prealgebra",
    "Precalculus",
)
STUDENT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def outcome_of(verdict: Verdict, answer: str, label: str) -> Outcome:
    """The grade of a boxed answer from its Math-Verify verdict.

    Partial credit (UNVERIFIED) only for a box that is the label itself in other formatting
    (`is_reference_text`) which Math-Verify does not confirm; any other box it cannot read is
    WRONG, so no unreadable box out-earns an honest wrong answer. A check that timed out is WRONG
    too, or students would learn to write answers that hang the verifier.
    """
    if verdict is Verdict.EQUAL:
        return Outcome.CORRECT
    if verdict is Verdict.NOT_EQUAL and is_reference_text(answer, label):
        return Outcome.UNVERIFIED
    return Outcome.WRONG


class MathTask(Task):
    """Competition math graded by Math-Verify. Owns a verifier worker: call close() when done."""

    name = "math"

    def __init__(
        self,
        prompt: TeacherPromptParams | None = None,
        parser: ParserParams | None = None,
        verify: VerifyParams | None = None,
    ) -> None:
        super().__init__(prompt or TeacherPromptParams(topics=MATH_TOPICS), parser or ParserParams())
        self.verifier = MathVerifier(verify)

    def answer_parses(self, answer: str) -> bool:
        return self.verifier.parses(answer)

    def student_prompt(self, question: str) -> str:
        return f"{question}\n\n{STUDENT_INSTRUCTION}"

    def grade(self, response: str, label: str) -> Graded:
        return self.grade_many([response], [label])[0]

    def grade_many(self, responses: Sequence[str], labels: Sequence[str]) -> list[Graded]:
        """Grades in order; all boxed answers go through the warm worker in one pass."""
        answers = [extract_last_boxed(response) for response in responses]
        pairs = list(zip(answers, labels, strict=True))
        boxed = [(answer, label) for answer, label in pairs if answer is not None]
        verdicts = iter(self.verifier.verify_many(boxed))
        return [
            Graded(Outcome.NO_ANSWER, None)
            if answer is None
            else Graded(outcome_of(next(verdicts), answer, label), answer)
            for answer, label in pairs
        ]

    def close(self) -> None:
        self.verifier.close()

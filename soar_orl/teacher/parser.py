"""The teacher's output contract: `<question>...</question> <answer>\\boxed{...}</answer>`.

An output counts only if it has both tags, a non-empty question, a boxed answer that the task's
verifier can parse, and fits the length limits. Anything else is rejected with a typed reason,
so that rejection sampling can report why the teacher fails (SOAR resamples rejected outputs:
keeping only valid ones keeps the teacher's RLOO gradient unbiased).

`parse_teacher_output` never raises on any text and runs in linear time (plain `str.find`, no
backtracking regex), because it reads raw model samples.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from soar_orl.tasks.verify import extract_last_boxed

QUESTION_TAGS = ("<question>", "</question>")
ANSWER_TAGS = ("<answer>", "</answer>")


@dataclass(frozen=True)
class QAPair:
    """One synthetic problem: the question and the content of its boxed answer (the label)."""

    question: str
    answer: str


class Rejection(str, enum.Enum):
    """Why a teacher output was rejected (values are metric names)."""

    MISSING_TAG = "missing_tag"
    EMPTY_QUESTION = "empty_question"
    NO_BOXED_ANSWER = "no_boxed_answer"
    OVER_LONG = "over_long"
    UNPARSEABLE_ANSWER = "unparseable_answer"


@dataclass(frozen=True)
class ParserParams:
    """Length limits of a valid teacher output, in characters.

    The teacher samples at most 512 tokens, so a question near the limit is usually a run-on
    sample; a long answer is rarely a short final answer and is slow to verify.
    """

    max_question_chars: int = 2000
    max_answer_chars: int = 200

    def __post_init__(self) -> None:
        if self.max_question_chars < 1 or self.max_answer_chars < 1:
            raise ValueError(f"length limits must be >= 1, got {self}")


def format_teacher_output(pair: QAPair) -> str:
    """The exact form the teacher is asked to write; `parse_teacher_output` inverts it."""
    question = f"{QUESTION_TAGS[0]}{pair.question}{QUESTION_TAGS[1]}"
    return f"{question} {ANSWER_TAGS[0]}\\boxed{{{pair.answer}}}{ANSWER_TAGS[1]}"


def parse_teacher_output(
    text: str,
    params: ParserParams,
    answer_parses: Callable[[str], bool],
) -> QAPair | Rejection:
    """The (question, answer) pair of one teacher output, or why it is rejected.

    Uses the first `<question>` block and the first `<answer>` block; the answer is the last box
    inside the answer block. Question and answer are stripped of surrounding whitespace.
    `answer_parses` is the task's check that its verifier can read the answer; it is called
    last because it may be the expensive step.
    """
    question = _tagged(text, QUESTION_TAGS)
    answer_block = _tagged(text, ANSWER_TAGS)
    if question is None or answer_block is None:
        return Rejection.MISSING_TAG
    question = question.strip()
    if not question:
        return Rejection.EMPTY_QUESTION
    answer = extract_last_boxed(answer_block)
    if answer is None:
        return Rejection.NO_BOXED_ANSWER
    if len(question) > params.max_question_chars or len(answer) > params.max_answer_chars:
        return Rejection.OVER_LONG
    if not answer_parses(answer):
        return Rejection.UNPARSEABLE_ANSWER
    return QAPair(question, answer)


def _tagged(text: str, tags: tuple[str, str]) -> str | None:
    """Text between the first opening tag and the next closing tag, or None."""
    opening, closing = tags
    start = text.find(opening)
    if start < 0:
        return None
    start += len(opening)
    end = text.find(closing, start)
    return None if end < 0 else text[start:end]

"""The text formats of SOAR: the boxed final answer, the teacher's output and its instruction.

A leaf (no soar_orl import): tasks grade boxed answers and build the teacher's prompt and parser
from these, the teacher samples against them, and evaluation reads them, so the formats sit
below all of those.

The boxed answer: the content of the last `\\boxed{...}` of a text (`extract_last_boxed`).

The teacher's output contract: `<question>...</question> <answer>\\boxed{...}</answer>`. An
output counts only if it has both tags, a non-empty question, a boxed answer that the task's
verifier can parse, and fits the length limits. Anything else is rejected with a typed reason,
so that rejection sampling can report why the teacher fails (SOAR resamples rejected outputs:
keeping only valid ones keeps the teacher's RLOO gradient unbiased). `parse_teacher_output`
never raises on any text and runs in linear time (plain `str.find`, no backtracking regex),
because it reads raw model samples.

The teacher's instruction (paper style): SOAR's teacher always sees the same prompt. It never sees
the hard problems, so everything it learns about what helps the student comes through the reward.
The prompt names the allowed topics, asks for one original problem that takes "2-3 steps", and
shows the exact output format that the parser accepts (rendered by `format_teacher_output`, so
the two cannot drift).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
# An escaped character (`\{`, `\}`, `\\`) or a bare brace: the only tokens brace matching needs.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)


def extract_last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) in `text`, stripped.

    Nested braces are matched; escaped braces `\\{ \\}` do not count. Returns None when there is
    no box, when the last box is never closed (a truncated answer is not an answer, even if an
    earlier box exists), or when it is empty. Linear in len(text), no recursion.
    """
    last = None
    for last in _BOX_OPEN.finditer(text):
        pass
    if last is None:
        return None
    depth = 1
    for token in _BRACE_TOKEN.finditer(text, last.end()):
        brace = token.group()
        if brace == "{":
            depth += 1
        elif brace == "}":
            depth -= 1
            if depth == 0:
                return text[last.end() : token.start()].strip() or None
    return None


# ---------------------------------------------------------------------------- the teacher's output

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


# ---------------------------------------------------------------------------- the teacher's instruction

DEFAULT_TEMPLATE = (
    "You are a {subject} teacher writing practice problems for a student.\n"
    "Write one original {subject} problem on one of these topics: {topics}.\n"
    "The problem should take {steps} steps to solve and have a single short final answer.\n"
    "Put the problem inside <question></question> tags and its final answer inside "
    "<answer></answer> tags as \\boxed{{...}}, exactly in this format:\n"
    "{format}"
)
_FORMAT_EXAMPLE = format_teacher_output(QAPair(question="...", answer="..."))


@dataclass(frozen=True)
class TeacherPromptParams:
    """What varies per task. `template` may use {subject}, {topics}, {steps} and must use {format}."""

    topics: tuple[str, ...]
    subject: str = "math"
    steps: str = "2-3"
    template: str = DEFAULT_TEMPLATE

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError("topics must name at least one topic")
        if "{format}" not in self.template:
            raise ValueError("template must contain {format}: the teacher has to see the output format")
        try:  # fail now on a bad placeholder, not at the first outer step
            teacher_instruction(self)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"template has a bad placeholder: {error!r}") from error


def teacher_instruction(params: TeacherPromptParams) -> str:
    """The instruction given to the teacher (before the chat template is applied)."""
    return params.template.format(
        subject=params.subject,
        topics=", ".join(params.topics),
        steps=params.steps,
        format=_FORMAT_EXAMPLE,
    )

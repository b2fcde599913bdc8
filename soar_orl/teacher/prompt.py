"""The teacher's fixed instruction prompt (paper style).

SOAR's teacher always sees the same prompt: it never sees the hard problems, so everything it
learns about what helps the student comes through the reward. The prompt names the allowed
topics, asks for one original problem that takes "2-3 steps", and shows the exact output format
that `teacher.parser` accepts (rendered by the parser's own formatter, so the two cannot drift).
"""

from __future__ import annotations

from dataclasses import dataclass

from soar_orl.teacher.parser import QAPair, format_teacher_output

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

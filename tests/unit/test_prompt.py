"""The teacher's instruction prompt."""

from __future__ import annotations

import pytest

from soar_orl.formats import (
    ParserParams,
    QAPair,
    TeacherPromptParams,
    parse_teacher_output,
    teacher_instruction,
)


def test_default_instruction_names_topics_steps_and_format() -> None:
    text = teacher_instruction(TeacherPromptParams(topics=("Algebra", "Number Theory")))
    assert "Algebra, Number Theory" in text
    assert "2-3 steps" in text
    assert "one original math problem" in text
    assert text.rstrip().endswith("<question>...</question> <answer>\\boxed{...}</answer>")


def test_the_format_shown_is_what_the_parser_accepts() -> None:
    example = teacher_instruction(TeacherPromptParams(topics=("Algebra",))).splitlines()[-1]
    assert parse_teacher_output(example, ParserParams(), lambda answer: True) == QAPair("...", "...")


def test_instruction_is_configurable_per_task() -> None:
    params = TeacherPromptParams(
        topics=("addition", "multiplication"),
        subject="arithmetic",
        steps="1-2",
        template="Write an {subject} problem ({topics}), {steps} steps.\n{format}",
    )
    text = teacher_instruction(params)
    assert text.startswith("Write an arithmetic problem (addition, multiplication), 1-2 steps.\n<question>")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topics": ()}, "at least one topic"),
        ({"topics": ("a",), "template": "no format here"}, "{format}"),
        ({"topics": ("a",), "template": "{format} {unknown}"}, "bad placeholder"),
    ],
)
def test_bad_prompt_params_fail_early(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        TeacherPromptParams(**kwargs)

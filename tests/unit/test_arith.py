"""The arithmetic world without a model: generator, bands, verifier, teacher format, cache keys."""

from __future__ import annotations

import dataclasses

import pytest

from soar_orl.formats import QAPair, Rejection, format_teacher_output
from soar_orl.tasks import build_task
from soar_orl.tasks.arith import (
    ArithTask,
    Band,
    band_problems,
    parse_integer,
    parse_sum,
    student_answer,
    written_answer,
)
from soar_orl.tasks.arith_model import (
    EASY_BANDS,
    WORLDS,
    PretrainSettings,
    _example,
    settings_key,
    world_chars,
    world_task,
)
from soar_orl.tasks.base import Graded, Outcome
from soar_orl.tiny_model import make_char_tokenizer

TASK = ArithTask()

# ---------------------------------------------------------------- generator and bands


def test_problems_are_a_pure_function_of_seed_band_and_index() -> None:
    band = Band((3, 2))
    first = band_problems(band, 20, seed=5)
    assert band_problems(band, 20, seed=5) == first
    assert band_problems(band, 5, seed=5, start=7) == first[7:12]
    assert band_problems(band, 20, seed=6) != first
    assert len({p.id for p in first}) == 20


@pytest.mark.parametrize("digits", [(1, 1), (2, 1), (3, 3), (2, 2, 2), (4, 1, 1, 1)])
def test_operands_have_exactly_the_band_digits_and_the_answer_is_their_sum(digits) -> None:
    band = Band(digits)
    for problem in band_problems(band, 200, seed=0):
        operands = problem.problem.split("+")
        assert tuple(map(len, operands)) == digits
        assert all(o == "0" or not o.startswith("0") for o in operands)
        assert problem.answer == str(sum(map(int, operands)))
        assert problem.metadata == {"band": band.name}
        assert problem.id.startswith(f"{band.name}#")


def test_one_digit_operands_include_zero_and_nine() -> None:
    values = {int(x) for p in band_problems(Band((1, 1)), 400, seed=0) for x in p.problem.split("+")}
    assert values == set(range(10))


def test_band_names_sizes_and_validation() -> None:
    assert Band((3, 2)).name == "3,2" and Band((3, 2)).size == 5
    assert Band((2, 2, 2)).name == "2,2,2" and Band((2, 2, 2)).size == 6
    for bad in [(3,), (), (2, 0)]:
        with pytest.raises(ValueError, match="at least two operands"):
            Band(bad)


# ---------------------------------------------------------------- verifier


@pytest.mark.parametrize(
    ("text", "value"),
    [("42", 42), (" 42 ", 42), ("-7", -7), ("+3", 3), ("007", 7), ("0", 0), ("-0", 0)],
)
def test_parse_integer_reads_plain_integers(text: str, value: int) -> None:
    assert parse_integer(text) == value


@pytest.mark.parametrize(
    "text",
    ["", " ", "2+5", "1_000", "1,000", "4.0", "1e3", "٣", "７", "0x1f", "--1", "1 2", "seven", "\\infty"]
    + ["1" * 41],
)
def test_parse_integer_rejects_everything_else(text: str) -> None:
    assert parse_integer(text) is None


@pytest.mark.parametrize(
    ("response", "label", "expected"),
    [
        ("\\boxed{46}", "46", Graded(Outcome.CORRECT, "46")),
        ("\\boxed{ 046 }", "46", Graded(Outcome.CORRECT, "046")),
        ("\\boxed{45}", "46", Graded(Outcome.WRONG, "45")),
        ("46", "46", Graded(Outcome.NO_ANSWER, None)),
        ("\\boxed{46", "46", Graded(Outcome.NO_ANSWER, None)),
        ("\\boxed{}", "46", Graded(Outcome.NO_ANSWER, None)),
        ("\\boxed{1}\\boxed{46}", "46", Graded(Outcome.CORRECT, "46")),
        ("\\boxed{46} so \\boxed{1}", "46", Graded(Outcome.WRONG, "1")),
        # Never evaluated: an expression with the right value is still not the answer.
        ("\\boxed{40+6}", "46", Graded(Outcome.WRONG, "40+6")),
        ("\\boxed{__import__('os')}", "46", Graded(Outcome.WRONG, "__import__('os')")),
        ("\\boxed{4{6}}", "46", Graded(Outcome.WRONG, "4{6}")),
        ("\\boxed{46.0}", "46", Graded(Outcome.WRONG, "46.0")),
        # A label that is not an integer: partial credit only for the label itself.
        ("\\boxed{46}", "forty-six", Graded(Outcome.WRONG, "46")),
        ("\\boxed{\\text{forty-six}}", "forty-six", Graded(Outcome.UNVERIFIED, "\\text{forty-six}")),
    ],
)
def test_grade(response: str, label: str, expected: Graded) -> None:
    assert TASK.grade(response, label) == expected


def test_grade_is_fast_and_wrong_on_huge_numbers() -> None:
    digits = "9" * 100_000
    assert TASK.grade(f"\\boxed{{{digits}}}", digits).outcome is Outcome.UNVERIFIED
    assert TASK.grade(f"\\boxed{{{digits}}}", "9").outcome is Outcome.WRONG


def test_grade_many_matches_grade() -> None:
    responses = ["\\boxed{3}", "x", "\\boxed{4}"]
    assert TASK.grade_many(responses, ["3", "3", "3"]) == [TASK.grade(r, "3") for r in responses]


# ---------------------------------------------------------------- prompts and the teacher contract


def test_student_prompt_and_answer_format() -> None:
    assert TASK.student_prompt("12+34") == "12+34="
    assert student_answer(46) == "\\boxed{46}"
    assert TASK.grade(student_answer(46), "46").outcome is Outcome.CORRECT


def test_teacher_prompt_is_short_and_shows_the_format() -> None:
    prompt = TASK.teacher_prompt()
    assert "addition" in prompt
    assert prompt.endswith("<question>...</question> <answer>\\boxed{...}</answer>")
    assert len(prompt) < 128  # a character-level model reads every character of it


@pytest.mark.parametrize(("question", "answer"), [("12+34", "46"), ("407+58+6", "471"), ("9+9", "-3")])
def test_teacher_output_round_trip(question: str, answer: str) -> None:
    pair = QAPair(question, answer)
    assert TASK.parse_teacher_output(format_teacher_output(pair)) == pair


@pytest.mark.parametrize(
    ("text", "rejection"),
    [
        ("<question>1+2</question>", Rejection.MISSING_TAG),
        ("<question>1+2</question> <answer>3</answer>", Rejection.NO_BOXED_ANSWER),
        ("<question>1+2</question> <answer>\\boxed{three}</answer>", Rejection.UNPARSEABLE_ANSWER),
        ("<question>1+2</question> <answer>\\boxed{1+2}</answer>", Rejection.UNPARSEABLE_ANSWER),
        ("<question>" + "1+" * 40 + "1</question> <answer>\\boxed{41}</answer>", Rejection.OVER_LONG),
    ],
)
def test_teacher_rejections(text: str, rejection: Rejection) -> None:
    assert TASK.parse_teacher_output(text) is rejection


def test_parse_sum_reads_only_plain_sums() -> None:
    assert parse_sum(" 12+345 ") == ("12", "345")
    assert parse_sum("1+2+3") == ("1", "2", "3")
    for text in ["12", "12-3", "12+", "+12", "1 + 2", "1+2=", "a+b"]:
        assert parse_sum(text) is None


def test_build_task_knows_arith() -> None:
    assert isinstance(build_task("arith"), ArithTask)


def test_recipes_name_exactly_the_tasks_build_task_knows() -> None:
    import typing

    from soar_orl.config import DataConfig
    from soar_orl.tasks import TASK_NAMES

    assert typing.get_args(DataConfig.model_fields["task"].annotation) == TASK_NAMES
    for name in TASK_NAMES:
        assert build_task(name).name == name


# ---------------------------------------------------------------- units first (arith-lsd)

LSD = build_task("arith-lsd")


@pytest.mark.parametrize(("value", "msd", "lsd"), [(465, "465", "564"), (100, "100", "001"), (7, "7", "7"),
                                                   (0, "0", "0"), (-12, "-12", "-21")])
def test_written_answers_round_trip_in_both_orders(value: int, msd: str, lsd: str) -> None:
    assert (written_answer(value), written_answer(value, "lsd")) == (msd, lsd)
    assert parse_integer(msd) == value and parse_integer(lsd, "lsd") == value


def test_units_first_grading_reads_the_box_reversed_against_a_true_label() -> None:
    assert LSD.student_answer(465) == "\\boxed{564}"
    assert LSD.grade("\\boxed{564}", "465") == Graded(Outcome.CORRECT, "564")
    assert LSD.grade("\\boxed{465}", "465").outcome is Outcome.WRONG  # the usual order is wrong here
    assert LSD.grade("\\boxed{0010}", "100").outcome is Outcome.CORRECT  # 0100 read back: trailing zeros
    assert LSD.grade("\\boxed{5+64}", "465").outcome is Outcome.WRONG
    assert TASK.grade("\\boxed{564}", "465").outcome is Outcome.WRONG


def test_units_first_teacher_labels_become_true_values() -> None:
    text = format_teacher_output(QAPair("407+58", LSD.written_answer(465)))
    assert "\\boxed{564}" in text
    assert LSD.parse_teacher_output(text) == QAPair("407+58", "465")
    assert LSD.reference_answer("407+58") == "465"
    assert TASK.parse_teacher_output(text) == QAPair("407+58", "564")  # the usual task keeps the box as written
    assert LSD.parse_teacher_output("<question>1+2</question> <answer>\\boxed{x}</answer>") is Rejection.UNPARSEABLE_ANSWER


def test_right_answer_counts_read_a_units_first_label_as_the_true_value() -> None:
    from soar_orl.eval.questions import answer_accuracy

    assert LSD.response_for("465") == "\\boxed{564}" and TASK.response_for("465") == "\\boxed{465}"
    pairs = [LSD.parse_teacher_output(format_teacher_output(QAPair("407+58", answer))) for answer in ("564", "465")]
    assert answer_accuracy(LSD, pairs) == 0.5
    assert answer_accuracy(TASK, [QAPair("407+58", "465"), QAPair("407+58", "564")]) == 0.5


def test_each_world_pretrains_on_its_own_order() -> None:
    import random

    for name, order in (("arith", "msd"), ("arith-lsd", "lsd")):
        settings = WORLDS[name]
        task = world_task(settings)
        assert settings.answer_order == order and task.name == name
        prompt, response = _example(task, Band((3, 2)), random.Random(0), teacher=False)
        value = sum(map(int, prompt.removesuffix("=").split("+")))
        assert response == student_answer(value, order) and task.grade(response, str(value)).outcome is Outcome.CORRECT
        _, teacher_text = _example(task, Band((3, 2)), random.Random(0), teacher=True)
        question, label = task.parse_teacher_output(teacher_text).question, task.parse_teacher_output(teacher_text).answer
        assert task.reference_answer(question) == label
    assert world_chars(world_task(WORLDS["arith-lsd"])) == world_chars(TASK)  # one tokenizer for both


# ---------------------------------------------------------------- tokenizer and cache keys


def test_world_chars_cover_every_text_the_model_sees() -> None:
    chars = world_chars(TASK)
    texts = [
        TASK.teacher_prompt(),
        format_teacher_output(QAPair("407+58+6", "471")),
        TASK.student_prompt("99+1") + student_answer(100),
    ]
    assert set("".join(texts)) <= set(chars)
    assert len(chars) < 64
    tokenizer = make_char_tokenizer(chars)
    text = TASK.teacher_prompt()
    assert len(tokenizer(text, add_special_tokens=False).input_ids) == len(text)  # one token per character
    assert tokenizer.unk_token_id not in tokenizer(text, add_special_tokens=False).input_ids


def test_settings_key_changes_with_every_setting() -> None:
    base = settings_key(PretrainSettings(), TASK)
    assert settings_key(PretrainSettings(), TASK) == base
    assert settings_key(PretrainSettings(steps=7), TASK) != base
    assert settings_key(PretrainSettings(easy_bands=EASY_BANDS[:1]), TASK) != base
    spec = dataclasses.replace(PretrainSettings().spec, num_hidden_layers=1)
    assert settings_key(PretrainSettings(spec=spec), TASK) != base
    lsd = settings_key(WORLDS["arith-lsd"], LSD)
    assert lsd != base and lsd["settings"]["answer_order"] == "lsd"
    assert "answer_order" not in base["settings"]  # the default leaves the existing hash alone


def test_pretrain_settings_validation() -> None:
    with pytest.raises(ValueError, match="easy_bands"):
        PretrainSettings(easy_bands=())
    with pytest.raises(ValueError, match="teacher_share"):
        PretrainSettings(teacher_share=0.0)
    with pytest.raises(ValueError, match="answer_order"):
        PretrainSettings(answer_order="middle")
    with pytest.raises(ValueError, match="answer_order"):
        ArithTask(answer_order="middle")

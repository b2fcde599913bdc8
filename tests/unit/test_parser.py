"""The teacher output contract: rejections, round trips, and robustness to any text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soar_orl.formats import (
    ParserParams,
    QAPair,
    Rejection,
    format_teacher_output,
    parse_teacher_output,
)

PARAMS = ParserParams(max_question_chars=200, max_answer_chars=20)


def always(answer: str) -> bool:
    return True


def parse(text: str) -> QAPair | Rejection:
    return parse_teacher_output(text, PARAMS, always)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<question>What is 2+3?</question> <answer>\\boxed{5}</answer>", QAPair("What is 2+3?", "5")),
        (
            "Sure!\n<question>\n  Find x if 2x = 6.\n</question>\n<answer>So x = \\boxed{ 3 }.</answer> bye",
            QAPair("Find x if 2x = 6.", "3"),
        ),
        ("<answer>\\boxed{5}</answer><question>Q?</question>", QAPair("Q?", "5")),  # order does not matter
        ("<question>Q?</question><answer>\\boxed{1} or \\boxed{2}</answer>", QAPair("Q?", "2")),
        ("What is 2+3? <answer>\\boxed{5}</answer>", Rejection.MISSING_TAG),
        ("<question>What is 2+3?</question> \\boxed{5}", Rejection.MISSING_TAG),
        ("<question>What is 2+3? <answer>\\boxed{5}</answer>", Rejection.MISSING_TAG),
        ("<question>  \n</question><answer>\\boxed{5}</answer>", Rejection.EMPTY_QUESTION),
        ("<question>Q?</question><answer>5</answer>", Rejection.NO_BOXED_ANSWER),
        ("<question>Q?</question><answer>\\boxed{}</answer>", Rejection.NO_BOXED_ANSWER),
        ("<question>Q?</question><answer>\\boxed{5</answer>", Rejection.NO_BOXED_ANSWER),
        ("<question>Q?</question>\\boxed{5}<answer>five</answer>", Rejection.NO_BOXED_ANSWER),
        ("<question>" + "x" * 201 + "</question><answer>\\boxed{5}</answer>", Rejection.OVER_LONG),
        ("<question>Q?</question><answer>\\boxed{" + "1" * 21 + "}</answer>", Rejection.OVER_LONG),
    ],
)
def test_parse_examples(text: str, expected: QAPair | Rejection) -> None:
    assert parse(text) == expected


def test_unparseable_answer_is_checked_last() -> None:
    calls: list[str] = []

    def never(answer: str) -> bool:
        calls.append(answer)
        return False

    good = "<question>Q?</question><answer>\\boxed{=}</answer>"
    assert parse_teacher_output(good, PARAMS, never) is Rejection.UNPARSEABLE_ANSWER
    assert calls == ["="]
    too_long = "<question>Q?</question><answer>\\boxed{" + "1" * 21 + "}</answer>"
    assert parse_teacher_output(too_long, PARAMS, never) is Rejection.OVER_LONG
    assert calls == ["="]  # not asked about an answer that was already rejected


def test_params_are_checked() -> None:
    with pytest.raises(ValueError):
        ParserParams(max_question_chars=0)


# Arbitrary text, biased towards the tags and boxes the parser looks for.
_fragments = st.sampled_from(
    ["<question>", "</question>", "<answer>", "</answer>", "\\boxed{", "\\fbox{", "{", "}", "\\", " ", "5"]
)
_messy_text = st.lists(st.one_of(_fragments, st.text(max_size=10)), max_size=30).map("".join)


@given(st.one_of(st.text(), _messy_text), st.booleans())
def test_parser_never_raises(text: str, parses: bool) -> None:
    result = parse_teacher_output(text, PARAMS, lambda answer: parses)
    assert isinstance(result, (QAPair, Rejection))
    if isinstance(result, QAPair):
        assert result.question and result.answer


# Well-formed content: questions without tag characters, answers with balanced braces.
_no_tags = st.text(
    alphabet=st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)), max_size=60
)
_question = _no_tags.filter(lambda q: q.strip() and len(q.strip()) <= PARAMS.max_question_chars)
_atom = st.text(
    alphabet=st.characters(blacklist_characters="{}\\<>", blacklist_categories=("Cs",)), max_size=5
)
_answer = (
    st.recursive(_atom, lambda inner: st.lists(inner, max_size=3).map(lambda xs: "{" + "".join(xs) + "}"))
    .map(str.strip)
    .filter(lambda a: a and len(a) <= PARAMS.max_answer_chars)
)


@given(_question, _answer)
def test_parser_round_trips_well_formed_output(question: str, answer: str) -> None:
    pair = QAPair(question.strip(), answer)
    assert parse(format_teacher_output(pair)) == pair

"""Box extraction and the time-limited Math-Verify worker, on real MATH-500 answers."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soar_orl.formats import extract_last_boxed
from soar_orl.tasks.verify import MathVerifier, Verdict, VerifyParams, is_reference_text, normalise_answer_text

# ---------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is $\\boxed{5}$.", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{1}, then \\boxed{ 2 }", "2"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not close the box
        ("\\fbox{7}", "7"),
        ("\\boxed {x^{2}}", "x^{2}"),
        ("\\boxed{\\boxed{3}}", "3"),
        ("no box here", None),
        ("\\boxed{}", None),
        ("\\boxed{  }", None),
        ("\\boxed{1} then \\boxed{2", None),  # the last box is truncated: no answer
        ("\\boxed{a\\}", None),  # the only closing brace is escaped
    ],
)
def test_extract_last_boxed(text: str, expected: str | None) -> None:
    assert extract_last_boxed(text) == expected


def test_extract_is_linear_on_deep_nesting() -> None:
    depth = 10_000
    text = "\\boxed{" + "{" * depth + "1" + "}" * depth + "}"
    start = time.perf_counter()
    assert extract_last_boxed(text) == "{" * depth + "1" + "}" * depth
    assert extract_last_boxed(text[:-1]) is None
    assert time.perf_counter() - start < 0.5


# Balanced LaTeX-ish content: text without braces or backslashes, nested in braces.
_plain = st.text(
    alphabet=st.characters(blacklist_characters="{}\\", blacklist_categories=("Cs",)), max_size=8
)
_balanced = st.recursive(
    _plain, lambda inner: st.lists(inner, max_size=3).map(lambda xs: "{" + "".join(xs) + "}")
)


@given(prefix=_plain, content=st.lists(_balanced, min_size=1, max_size=4).map("".join), suffix=_plain)
def test_extract_recovers_any_balanced_content(prefix: str, content: str, suffix: str) -> None:
    expected = content.strip() or None
    assert extract_last_boxed(f"{prefix}\\boxed{{{content}}}{suffix}") == expected


@given(st.text())
def test_extract_never_raises(text: str) -> None:
    extract_last_boxed(text)


# ---------------------------------------------------------------- the label's text in a box


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1599 \\text{ dollars}", "1599dollars"),
        ("\\text{\\textbf{A}}, \\mbox {B}", "A,B"),  # nested and spaced wrappers
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("\\leftarrow \\rightarrow", "\\leftarrow\\rightarrow"),  # other commands stay
        ("111, \\! 111,\\,111\\;1\\:1\\ 1~1\\quad 1\\qquad1", "111,111,111111111"),
        ("$\\frac{1}{2}$", "\\frac{1}{2}"),
        ("\\$15", "\\$15"),  # an escaped character is content
        ("\\{1, 2\\}", "\\{1,2\\}"),
        ("{a}}", "{a}}"),  # unbalanced braces are kept as written
        ("\\text{a", "a"),
    ],
)
def test_normalise_answer_text(text: str, expected: str) -> None:
    assert normalise_answer_text(text) == expected


def test_reference_text_is_equality_after_normalisation_not_containment() -> None:
    assert is_reference_text("\\text{(C)}", "(C)")
    assert is_reference_text("111,111,111", "111, \\! 111, \\! 111")
    assert not is_reference_text("x^{x^{x^{...}}}", "x")  # contains the label: no credit
    assert not is_reference_text("1 \\left( \\right.", "1")
    assert not is_reference_text("1", "\\text{ }")  # a label with no text matches nothing
    assert not is_reference_text("", "")


def test_normalisation_is_linear_on_hostile_input() -> None:
    start = time.perf_counter()
    normalise_answer_text("\\text{" * 50_000 + "}" * 50_000)
    normalise_answer_text("{" * 100_000 + "\\left(" * 50_000)
    assert not is_reference_text("9" * 1_000_000 + "\\,", "9" * 999_999)
    assert time.perf_counter() - start < 2.0


@given(st.text(), st.text())
def test_reference_text_never_raises_and_is_symmetric(answer: str, reference: str) -> None:
    assert is_reference_text(answer, reference) == is_reference_text(reference, answer)


# ---------------------------------------------------------------- Math-Verify worker


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("1/2", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("\\frac{1}{2}", "1/2"),
        ("\\sqrt{8}", "2\\sqrt{2}"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\dfrac{\\pi}{2}", "\\frac{\\pi}{2}"),
        ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ],
)
def test_equivalent_forms_pass(verifier: MathVerifier, answer: str, reference: str) -> None:
    assert verifier.verify(answer, reference) is Verdict.EQUAL


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("1/3", "0.5"),
        ("\\sqrt{2}", "2\\sqrt{2}"),
        ("5", "-5"),
        ("(3, \\pi)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ],
)
def test_wrong_answers_fail(verifier: MathVerifier, answer: str, reference: str) -> None:
    assert verifier.verify(answer, reference) is Verdict.NOT_EQUAL


def test_unreadable_answer_is_not_equal(verifier: MathVerifier) -> None:
    assert verifier.verify("=", "5") is Verdict.NOT_EQUAL
    assert not verifier.parses("=")
    assert verifier.parses("\\frac{1}{2}")


def test_every_math500_reference_verifies_against_itself(verifier: MathVerifier, data_dir) -> None:
    lines = (data_dir / "math500.jsonl").read_text(encoding="utf-8").splitlines()
    answers = [json.loads(line)["answer"] for line in lines if line.strip()]
    assert len(answers) == 500
    verdicts = verifier.verify_many((answer, answer) for answer in answers)
    failing = [answer for answer, verdict in zip(answers, verdicts) if verdict is not Verdict.EQUAL]
    assert failing == []


def test_math500_references_are_not_all_equal(verifier: MathVerifier, data_dir) -> None:
    """Guard against a verifier that says EQUAL to everything: neighbours mostly differ."""
    lines = (data_dir / "math500.jsonl").read_text(encoding="utf-8").splitlines()
    answers = [json.loads(line)["answer"] for line in lines[:60]]
    pairs = [(a, b) for a, b in itertools.pairwise(answers) if a != b]
    verdicts = verifier.verify_many(pairs)
    assert sum(verdict is Verdict.EQUAL for verdict in verdicts) <= 2


@pytest.fixture()
def fast_verifier():
    with MathVerifier(VerifyParams(timeout_s=1.0)) as fast:
        yield fast


@pytest.mark.parametrize(
    "answer",
    ["9^{9^{9^{9}}}", "9^9^9^9", "{" * 10_000 + "1" + "}" * 10_000],
    ids=["tower", "flat-tower", "10k-nested-braces"],
)
def test_adversarial_answers_return_within_the_limit(fast_verifier: MathVerifier, answer: str) -> None:
    fast_verifier.parses("1")  # start the worker outside the timed region
    start = time.perf_counter()
    verdict = fast_verifier.verify(answer, "1")
    assert time.perf_counter() - start < 1.0 + 1.0  # the limit plus a generous allowance for the kill
    assert verdict in (Verdict.FAILED, Verdict.NOT_EQUAL)


def test_worker_recovers_after_a_timeout(fast_verifier: MathVerifier, caplog) -> None:
    assert fast_verifier.verify("9^{9^{9^{9}}}", "1") is Verdict.FAILED
    assert fast_verifier.num_failures == 1
    assert "timed out" in caplog.text
    assert fast_verifier.verify("2", "2") is Verdict.EQUAL


def test_checks_from_many_threads(verifier: MathVerifier) -> None:
    results: dict[int, Verdict] = {}

    def check(i: int) -> None:
        results[i] = verifier.verify(str(i), str(i if i % 2 else i + 1))

    threads = [threading.Thread(target=check, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: Verdict.EQUAL if i % 2 else Verdict.NOT_EQUAL for i in range(8)}


def test_verify_params_are_checked() -> None:
    with pytest.raises(ValueError):
        VerifyParams(timeout_s=0)
    with pytest.raises(ValueError):
        VerifyParams(memory_limit_mb=-1)

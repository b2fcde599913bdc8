"""Math benchmark loading and the math task (prompts, teacher parsing, grading)."""

from __future__ import annotations

import gzip
import json
import re
import sys
import types
from pathlib import Path

import pytest

from soar_orl.config import RewardLevelsConfig
from soar_orl.formats import QAPair, Rejection
from soar_orl.tasks.base import Graded, Outcome, Problem
from soar_orl.tasks.math import MATH_TOPICS, MathTask
from soar_orl.tasks.problems import ProblemFields, ProblemFormatError, load_problems
from soar_orl.tasks.verify import Verdict, VerifyParams

# ---------------------------------------------------------------- loading


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("math500.jsonl", 500),
        ("math_test_5000.jsonl", 5000),
        ("harp.jsonl.gz", 4780),
        ("olympiadbench_675.jsonl", 675),
    ],
)
def test_loads_the_shipped_benchmarks(data_dir: Path, name: str, rows: int) -> None:
    problems = load_problems(data_dir / name)
    assert len(problems) == rows
    assert all(isinstance(p.id, str) and p.problem and p.answer for p in problems)


def test_normalised_fields_and_metadata(data_dir: Path) -> None:
    first = load_problems(data_dir / "math500.jsonl")[0]
    assert first.id == "test/precalculus/807.json"
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.metadata["subject"] == "Precalculus" and first.metadata["level"] == 2
    assert not {"id", "problem", "answer"} & set(first.metadata)
    olympiad = load_problems(data_dir / "olympiadbench_675.jsonl")[0]
    assert olympiad.id == "1606"  # integer ids become strings


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_gzipped_jsonl_reads_like_plain_jsonl(tmp_path: Path) -> None:
    rows = [{"id": "a", "problem": "p", "answer": "1", "level": 2}, {"id": "b", "problem": "q", "answer": "2"}]
    plain = write_jsonl(tmp_path / "set.jsonl", rows)
    packed = tmp_path / "set.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert load_problems(packed) == load_problems(plain)
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(b'{"id": "a", "problem": "p", "answer": "1"}\n{not json\n'))
    with pytest.raises(ProblemFormatError, match=rf"^{re.escape(str(broken))}:2: invalid JSON"):
        load_problems(broken)


def test_missing_field_names_the_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl", [{"id": "a", "problem": "p", "answer": "1"}, {"id": "b", "problem": "q"}]
    )
    with pytest.raises(
        ProblemFormatError,
        match=rf"^{re.escape(str(path))}:2: missing field 'answer' \(fields: id, problem\)",
    ):
        load_problems(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"id": "a", "problem": "p", "answer": ""}', "field 'answer' is empty"),
        ('{"id": "a", "problem": "p", "answer": ["1", "2"]}', "must be a string or number"),
        ('{"id": "x", "problem": "p", "answer": "1"}', "duplicate id 'x'"),
    ],
)
def test_bad_rows_are_errors_with_their_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x", "problem": "p", "answer": "1"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ProblemFormatError, match=f"{re.escape(str(path))}:3: .*{message}"):
        load_problems(path)


def test_other_field_names_and_boxed_solutions(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "math.jsonl", [{"question": "1+1?", "solution": "So \\boxed{2}.", "level": 1}]
    )
    fields = ProblemFields(id=None, problem="question", answer="solution", answer_is_solution=True)
    assert load_problems(path, fields) == [Problem("0", "1+1?", "2", {"level": 1})]
    write_jsonl(path, [{"question": "1+1?", "solution": "It is 2."}])
    with pytest.raises(ProblemFormatError, match="no \\\\boxed"):
        load_problems(path, fields)


def test_parquet(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    path = tmp_path / "problems.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": 7, "problem": "p", "answer": "3", "level": 2}]), path)
    assert load_problems(path) == [Problem("7", "p", "3", {"level": 2})]
    pq.write_table(pa.Table.from_pylist([{"id": 7, "problem": "p"}]), path)
    with pytest.raises(ProblemFormatError, match=rf"{re.escape(str(path))}: row 0: missing field 'answer'"):
        load_problems(path)


def test_hub_dataset_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_dataset(name: str, split: str) -> list[dict]:
        calls.append((name, split))
        return [{"unique_id": "u1", "problem": "p", "answer": "4"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    problems = load_problems("HuggingFaceH4/MATH-500", ProblemFields(id="unique_id"))
    assert problems == [Problem("u1", "p", "4", {})]
    assert calls == [("HuggingFaceH4/MATH-500", "test")]


def test_hub_without_datasets_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match="pip install datasets"):
        load_problems("some/dataset")


# ---------------------------------------------------------------- the task


@pytest.fixture(scope="module")
def task():
    with_task = MathTask()
    yield with_task
    with_task.close()


def test_prompts(task: MathTask) -> None:
    assert all(topic in task.teacher_prompt() for topic in MATH_TOPICS)
    prompt = task.student_prompt("What is 1+1?")
    assert prompt.startswith("What is 1+1?") and "\\boxed{}" in prompt


def test_teacher_output_goes_through_the_verifier(task: MathTask) -> None:
    good = "<question>What is 1/2 + 1/2?</question> <answer>\\boxed{1}</answer>"
    assert task.parse_teacher_output(good) == QAPair("What is 1/2 + 1/2?", "1")
    bad = "<question>What is 1/2 + 1/2?</question> <answer>\\boxed{=}</answer>"
    assert task.parse_teacher_output(bad) is Rejection.UNPARSEABLE_ANSWER


def test_grading_outcomes(task: MathTask) -> None:
    responses = [
        "1/2 + 1/4 = 3/4, so \\boxed{\\frac{3}{4}}.",
        "\\boxed{0.75}",
        "I think it is \\boxed{0.7}",
        "The answer is \\boxed{?}",
        "The answer is 3/4.",
    ]
    graded = task.grade_many(responses, ["3/4"] * len(responses))
    assert graded == [
        Graded(Outcome.CORRECT, "\\frac{3}{4}"),
        Graded(Outcome.CORRECT, "0.75"),
        Graded(Outcome.WRONG, "0.7"),
        Graded(Outcome.WRONG, "?"),  # unreadable, and not the label: no partial credit
        Graded(Outcome.NO_ANSWER, None),
    ]
    assert task.grade("so \\boxed{2\\sqrt{2}}", "\\sqrt{8}").outcome is Outcome.CORRECT
    with pytest.raises(ValueError):
        task.grade_many(["\\boxed{1}"], [])


def test_an_answer_that_hangs_the_verifier_is_wrong() -> None:
    fast = MathTask(verify=VerifyParams(timeout_s=1.0))
    try:
        assert fast.grade("\\boxed{9^{9^{9^{9}}}}", "1").outcome is Outcome.WRONG
        assert fast.verifier.num_failures == 1
    finally:
        fast.close()


@pytest.mark.parametrize(
    ("box", "label"),
    [
        # Math-Verify does not confirm these boxes, yet each is its label with other spacing or
        # text wrappers: the student wrote the label, so it earns the partial credit.
        ("111,111,111", "111, \\! 111, \\! 111"),
        ("\\frac\\pi4+2-\\sqrt2", "\\frac \\pi4 + 2 - \\sqrt2"),
        ("1599 dollars", "1599 \\text{ dollars}"),
    ],
)
def test_partial_credit_for_the_label_in_other_formatting(task: MathTask, box: str, label: str) -> None:
    assert task.verifier.verify(box, label) is Verdict.NOT_EQUAL  # the verifier does not confirm it
    assert task.grade(f"\\boxed{{{box}}}", label) == Graded(Outcome.UNVERIFIED, box)


QUICK_HOSTILE_BOXES = [
    "\\boxed{x^{x^{x^{...}}}}",
    "\\boxed{\\left( \\right.}",
    "\\boxed{1 \\left( \\right.}",  # the label plus junk that makes it unreadable
    "\\boxed{1, 2, 3, 4, 5, 6, 7, 8, 9, x \\left(}",  # every guess at once, unreadable
    "\\boxed{}",
    "\\boxed{=}",
    "\\boxed{?}",
    "\\boxed{\\text{}}",
    "\\boxed{$}",
    "\\boxed{\\left.\\right.}",
    "\\boxed{\\\\}",
    "\\boxed{\\boxed{}}",
]
# These outlast Math-Verify: the worker's time limit ends them (about 2 s each, so one label).
HANGING_BOXES = ["\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}", "\\boxed{" + "a" * 100_000 + "}"]


def test_no_unreadable_box_out_earns_an_honest_wrong_answer() -> None:
    levels = RewardLevelsConfig()
    fast = MathTask(verify=VerifyParams(timeout_s=1.0))
    try:
        honest = fast.grade("\\boxed{12345}", "1")
        assert honest.outcome is Outcome.WRONG
        pairs = [(box, label) for box in QUICK_HOSTILE_BOXES for label in ("1", "x", "\\frac{3}{4}", "(1, 2)")]
        pairs += [(box, "1") for box in HANGING_BOXES]
        graded = fast.grade_many([box for box, _ in pairs], [label for _, label in pairs])
        over = [(box[:40], label, g.outcome) for (box, label), g in zip(pairs, graded, strict=True)
                if levels.reward(g.outcome) > levels.reward(honest.outcome)]
        assert over == []
        assert fast.verifier.num_failures >= 1  # the time limit was exercised, and held
    finally:
        fast.close()

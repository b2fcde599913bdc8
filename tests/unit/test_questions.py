"""Question diversity and answer agreement: the pure parts of `soar questions`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soar_orl.eval.questions import agreement, diversity, duplicate_rate, majority_answer, pairs_by_step
from soar_orl.tasks.arith import ArithTask
from soar_orl.teacher.parser import QAPair


def test_duplicates_are_counted_after_normalising_case_and_spaces() -> None:
    assert duplicate_rate(["1+2", "1 +2", "1+2 ", "3+4"]) == pytest.approx(0.25)  # only "1+2 " repeats
    assert duplicate_rate(["What is 1+2?", "what  is 1+2?", "3+4", "3+4"]) == pytest.approx(0.5)


def test_majority_answer_reads_boxes_and_ignores_unboxed() -> None:
    assert majority_answer(["\\boxed{5}", "\\boxed{7}", "no box", "\\boxed{7}"]) == "7"
    assert majority_answer(["none", "at all"]) is None


def test_agreement_grades_the_majority_against_the_teacher_answer() -> None:
    task = ArithTask()
    pairs = [QAPair("2+3", "5"), QAPair("2+2", "5"), QAPair("9+9", "18")]
    responses = [["\\boxed{5}", "\\boxed{6}", "\\boxed{5}"], ["\\boxed{4}"] * 3, ["nothing"] * 3]
    assert agreement(task, pairs, responses) == pytest.approx(1 / 3)


def test_diversity_per_step_from_the_raw_teacher_samples(tmp_path: Path) -> None:
    task = ArithTask()
    samples = tmp_path / "teacher_samples"
    samples.mkdir()
    rows = {0: ["12+3", "12+3", "45+6"], 1: ["7+8", "70+80", "700+800"]}
    for step, questions in rows.items():
        (samples / f"step_{step}.jsonl").write_text("".join(
            json.dumps({"text": f"<question>{q}</question> <answer>\\boxed{{1}}</answer>", "valid": True}) + "\n"
            for q in questions) + json.dumps({"text": "garbage", "valid": False}) + "\n")
    steps = pairs_by_step(tmp_path, task)
    assert [len(pairs) for pairs in steps.values()] == [3, 3]
    result = diversity(steps)
    assert result["per_step"][0]["duplicate_rate"] == pytest.approx(1 / 3)
    assert result["per_step"][1]["vendi"] > result["per_step"][0]["vendi"]
    assert result["run"]["questions"] == 6

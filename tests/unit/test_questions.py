"""Question diversity and answer agreement: the pure parts of `soar questions`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soar_orl.eval.questions import (
    agreement,
    answer_accuracy,
    diversity,
    duplicate_rate,
    format_questions_report,
    majority_answer,
    pairs_by_step,
    promoted_pairs,
    summarise,
)
from soar_orl.formats import QAPair
from soar_orl.tasks.arith import ArithTask


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
    result = diversity(task, steps)
    assert result["per_step"][0]["duplicate_rate"] == pytest.approx(1 / 3)
    assert result["per_step"][1]["vendi"] > result["per_step"][0]["vendi"]
    assert result["run"]["questions"] == 6
    assert result["per_step"][0]["answer_accuracy"] == 0.0  # every answer is 1: all wrong


def test_answer_accuracy_is_exact_for_arith_and_absent_for_math() -> None:
    pairs = [QAPair("1+2", "3"), QAPair("40+5", "46"), QAPair("7+8", "15"), QAPair("2*3", "6")]
    # 2*3 is not a sum the arithmetic task can solve: it counts as wrong, never evaluated.
    assert answer_accuracy(ArithTask(), pairs) == pytest.approx(2 / 4)
    assert ArithTask().reference_answer("123+4+56") == "183"
    assert ArithTask().reference_answer("__import__('os')") is None

    class NoReferences(ArithTask):
        def reference_answer(self, question: str) -> str | None:
            return None

    assert answer_accuracy(NoReferences(), pairs) is None


def test_promoted_pairs_are_read_in_promotion_order(tmp_path: Path) -> None:
    assert promoted_pairs(tmp_path) == []  # no promotion yet: no file
    rows = [{"step": 3, "pairs": [{"question": "1+1", "answer": "2"}, {"question": "2+2", "answer": "4"}]},
            {"step": 7, "pairs": [{"question": "1+1", "answer": "3"}]}]
    (tmp_path / "promoted_questions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    pairs = promoted_pairs(tmp_path)
    assert pairs == [QAPair("1+1", "2"), QAPair("2+2", "4"), QAPair("1+1", "3")]
    summary = summarise(ArithTask(), pairs)
    assert summary["duplicate_rate"] == pytest.approx(1 / 3) and summary["answer_accuracy"] == pytest.approx(2 / 3)


def test_the_markdown_calls_agreement_a_proxy_and_reports_pq_separately() -> None:
    steps = {0: [QAPair("1+2", "3"), QAPair("4+5", "9")]}
    result = {"run_dir": "runs/x", "diversity": diversity(ArithTask(), steps),
              "agreement": {"solver": "builtin:arith", "samples": 8, "questions": 2, "share": 0.5},
              "promoted": {**summarise(ArithTask(), steps[0]), "agreement": {"questions": 2, "share": 1.0}}}
    text = format_questions_report(result)
    assert "answer agreement with builtin:arith (majority of 8 samples, 2 questions): 50.0% (a proxy for correctness" in text
    assert "2 promoted questions (PQ)" in text and "PQ answer agreement with the same solver (2 questions): 100.0%" in text
    assert "| 0 | 2 |" in text and text.count("right answers 100.0%") == 2 and "| 100.0% |" in text
    assert "no promoted questions" in format_questions_report({**result, "promoted": None})


def test_questions_are_tallied_per_band_with_their_right_answers() -> None:
    from soar_orl.eval.questions import kind_counts
    from soar_orl.tasks.walk import WalkTask

    arith = ArithTask()
    pairs = [QAPair("12+3", "15"), QAPair("12+4", "99"), QAPair("1+2", "3"), QAPair("what?", "1")]
    assert kind_counts(arith, pairs) == {"1,1": [1, 1], "2,1": [2, 1]}  # the malformed question is left out
    walk = WalkTask()
    noisy = sorted(walk.world.noise())[0]
    right = QAPair(f"{noisy}01", walk.reference_answer(f"{noisy}01"))
    wrong = QAPair(f"{noisy}01", noisy + walk.world.noise()[noisy][0])
    assert kind_counts(walk, [right, wrong]) == {"1 noisy": [2, 1]}


def test_the_report_shows_the_bands_of_generated_and_promoted_questions() -> None:
    task = ArithTask()
    generated = [QAPair("12+3", "15"), QAPair("123+45", "1")] * 2
    result = {"run_dir": "runs/x", "diversity": diversity(task, {0: generated}),
              "promoted": summarise(task, [QAPair("123+45", "168")])}
    report = format_questions_report(result)
    assert "| band | all generated | promoted |" in report
    assert "| 2,1 | 2 / 2 | 0 / 0 |" in report and "| 3,2 | 2 / 0 | 1 / 1 |" in report

"""pass@k from saved per-sample results (the engine part is tested in tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from soar_orl.eval.evaluate import pass_at_k_of, read_samples, write_samples
from soar_orl.eval.sampling import ProblemSamples


def test_samples_round_trip_through_jsonl(tmp_path: Path) -> None:
    samples = [ProblemSamples("a", ("x", "\\boxed{1}"), (False, True)), ProblemSamples("b", ("", "y"), (False, False))]
    write_samples(tmp_path / "t.samples.jsonl", samples)
    assert read_samples(tmp_path / "t.samples.jsonl") == samples


def test_pass_at_k_averages_problems() -> None:
    samples = [ProblemSamples("a", ("",) * 4, (True, False, False, False)), ProblemSamples("b", ("",) * 4, (False,) * 4)]
    table = pass_at_k_of(samples, (1, 2, 4))
    assert table[1] == pytest.approx((1 / 4 + 0) / 2)
    assert table[2] == pytest.approx((1 / 2 + 0) / 2)  # 1 - C(3,2)/C(4,2) = 1/2
    assert table[4] == pytest.approx(0.5)


def test_pass_at_k_refuses_ragged_sample_counts() -> None:
    with pytest.raises(ValueError, match="same number of samples"):
        pass_at_k_of([ProblemSamples("a", ("",), (True,)), ProblemSamples("b", ("", ""), (True, False))], (1,))


def test_a_row_with_mismatched_grades_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 responses but 1 grades"):
        ProblemSamples.from_row({"id": "a", "responses": ["x", "y"], "correct": [True]})

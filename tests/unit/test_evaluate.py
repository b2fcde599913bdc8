"""pass@k from saved per-sample results (the engine part is tested in tests/integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soar_orl.eval.evaluate import EvalSettings, pass_at_k_of, read_samples, write_pass_at_k_report, write_samples
from soar_orl.eval.passk import SeedSpread
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


def test_the_report_gives_mean_and_spread_over_seeds_in_json_and_markdown(tmp_path: Path) -> None:
    settings = EvalSettings(samples=4, ks=(1, 4), temperature=1.0, max_new_tokens=64, seed=0, dtype="float32",
                            max_model_len=256)
    results = {"math500": {1: SeedSpread.of([0.25, 0.75]), 4: SeedSpread.of([0.5, 1.0])},
               "olympiad": {1: SeedSpread.of([0.0, 0.0]), 4: SeedSpread.of([0.0, 0.5])}}
    write_pass_at_k_report(tmp_path, "m", settings, [3, 5], results, {"math500": 2, "olympiad": 1})
    record = json.loads((tmp_path / "pass_at_k.json").read_text())
    assert record["seeds"] == [3, 5] and record["problems"] == {"math500": 2, "olympiad": 1}
    assert record["pass_at_k"]["math500"]["1"] == {"mean": 0.5, "std": pytest.approx(0.3536, abs=1e-4),
                                                   "per_seed": [0.25, 0.75]}
    table = (tmp_path / "pass_at_k.md").read_text()
    assert "from 4 samples per problem, mean ± std over 2 seed(s)" in table
    assert "| test set | problems | pass@1 | pass@4 |" in table
    assert "| math500 | 2 | 50.00 ± 35.36 | 75.00 ± 35.36 |" in table
    assert "| olympiad | 1 | 0.00 ± 0.00 | 25.00 ± 35.36 |" in table

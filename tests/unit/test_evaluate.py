"""pass@k from saved per-sample results (the engine part is tested in tests/integration)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from soar_orl.eval.evaluate import (
    EvalSettings,
    evaluate_model,
    evaluate_over_seeds,
    pass_at_k_of,
    read_samples,
    write_pass_at_k_report,
    write_samples,
)
from soar_orl.eval.passk import SeedSpread
from soar_orl.eval.sampling import ProblemSamples, request_seed
from soar_orl.eval.shards import ResumeError
from soar_orl.tasks.base import Problem


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


# ---------------------------------------------------------------------------- resumable evaluation

PROBLEMS = {"a": [Problem(f"a{i}", f"question {i}", str(i)) for i in range(7)],
            "b": [Problem(f"b{i}", f"other {i}", str(i)) for i in range(3)]}
SETTINGS = EvalSettings(samples=4, ks=(1, 4), temperature=1.0, max_new_tokens=64, seed=0, dtype="float32",
                        max_model_len=256, shard_size=3)


class SeededSampler:
    """Stands in for the sampling service: each problem's grades are a function of (seed,
    problem), as with per-problem seeds; records the shards it samples and can die after some."""

    model_dir = "m"
    task_name = "math"

    def __init__(self, die_after: int | None = None) -> None:
        self.sampled: list[tuple[int, tuple[str, ...]]] = []
        self.die_after = die_after

    def sample_shards(self, shards, params, on_done) -> None:
        for shard in shards:
            if self.die_after is not None and len(self.sampled) == self.die_after:
                raise KeyboardInterrupt("killed")
            self.sampled.append((shard.seed, tuple(p.id for p in shard.problems)))
            on_done(shard, [ProblemSamples(p.id, (f"{shard.seed}:{p.id}",) * params.n,
                                           tuple(request_seed(shard.seed, p) % (j + 2) == 0 for j in range(params.n)))
                            for p in shard.problems])


def test_a_killed_evaluation_resumes_without_resampling_and_gives_the_uninterrupted_numbers(tmp_path: Path) -> None:
    uninterrupted = evaluate_over_seeds(SeededSampler(), PROBLEMS, SETTINGS, [0, 1], tmp_path / "whole")
    first = SeededSampler(die_after=3)
    with pytest.raises(KeyboardInterrupt):
        evaluate_over_seeds(first, PROBLEMS, SETTINGS, [0, 1], tmp_path / "out")
    done = {path: path.read_text() for path in (tmp_path / "out").rglob("shard_*.jsonl")}
    assert len(done) == 3
    second = SeededSampler()
    resumed = evaluate_over_seeds(second, PROBLEMS, SETTINGS, [0, 1], tmp_path / "out")
    # 2 seeds x (3 shards of a + 1 of b) = 8 shards: the 3 finished ones are not sampled again.
    assert len(second.sampled) == 5 and not set(second.sampled) & set(first.sampled)
    assert all(path.read_text() == text for path, text in done.items())
    assert resumed == uninterrupted
    for seed in (0, 1):
        assert read_samples(tmp_path / "out" / f"seed_{seed}" / "a.samples.jsonl") == \
            read_samples(tmp_path / "whole" / f"seed_{seed}" / "a.samples.jsonl")
        assert [s.problem_id for s in read_samples(tmp_path / "out" / f"seed_{seed}" / "a.samples.jsonl")] == \
            [p.id for p in PROBLEMS["a"]]
    third = SeededSampler()
    evaluate_over_seeds(third, PROBLEMS, replace(SETTINGS, ks=(1, 2)), [0, 1], tmp_path / "out")
    assert third.sampled == []  # the ks only read the samples: other ks reuse them


def test_an_evaluation_folder_with_other_settings_is_refused_or_replaced(tmp_path: Path) -> None:
    evaluate_model(SeededSampler(), PROBLEMS, SETTINGS, tmp_path)
    with pytest.raises(ResumeError, match="samples: 4 before, 8 now"):
        evaluate_model(SeededSampler(), PROBLEMS, replace(SETTINGS, samples=8, ks=(1,)), tmp_path)
    with pytest.raises(ResumeError, match="test_sets"):
        evaluate_model(SeededSampler(), {"a": PROBLEMS["a"][:5]}, SETTINGS, tmp_path)
    sampler = SeededSampler()
    table = evaluate_model(sampler, PROBLEMS, replace(SETTINGS, samples=8, ks=(1,)), tmp_path, replace_other=True)
    assert len(sampler.sampled) == 4 and set(table) == {"a", "b"}
    assert len(read_samples(tmp_path / "a.samples.jsonl")[0].correct) == 8


def test_different_seeds_and_problems_get_different_request_seeds() -> None:
    p, q = PROBLEMS["a"][:2]
    assert request_seed(0, p) == request_seed(0, Problem(p.id, p.problem, "other label"))
    assert len({request_seed(0, p), request_seed(1, p), request_seed(0, q)}) == 3
    assert 0 <= request_seed(123, p) < 2**62


@pytest.mark.parametrize("disable", [False, True])
def test_a_shared_progress_bar_counts_the_samples_already_on_disk(tmp_path: Path, disable: bool) -> None:
    # A run's final evaluation hands one bar to several evaluations, and logging.progress_bar=false
    # hands a disabled one (a disabled tqdm has no `initial`).
    from soar_orl.eval.shards import progress_bar

    test_set = {"a": PROBLEMS["a"]}
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(SeededSampler(die_after=1), test_set, SETTINGS, tmp_path)  # one shard on disk
    bar = progress_bar(total=4 * 7, done=0, desc="shared", disable=disable)
    sampler = SeededSampler()
    evaluate_model(sampler, test_set, SETTINGS, tmp_path, bar=bar)
    assert len(sampler.sampled) == 2
    assert disable or bar.n == 4 * 7
    bar.close()

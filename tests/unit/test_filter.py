"""`soar filter` bookkeeping: shards, resume without recomputation, refusal of other settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soar_orl.eval.filter import SETTINGS_FILE, SHARDS_DIR, FilterSettings, run_filter
from soar_orl.eval.sampling import ProblemSamples
from soar_orl.eval.shards import ResumeError
from soar_orl.tasks.base import Problem
from soar_orl.tasks.problems import load_problems

PROBLEMS = [Problem(f"p{i}", f"question {i}", str(i), {"level": i % 3}) for i in range(10)]
SETTINGS = FilterSettings(model="m", task="math", k=4, shard_size=3)


def successes(problem: Problem) -> int:
    return int(problem.id[1:]) % 3  # p0, p3, p6, p9 are never solved


class Sampler:
    """Stands in for the sampling service: records what it is asked, can die after some shards
    like a killed run."""

    model_dir = "m"
    task_name = "math"

    def __init__(self, die_after: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.die_after = die_after

    def sample_shards(self, shards, params, on_done) -> None:
        for shard in shards:
            if self.die_after is not None and len(self.calls) == self.die_after:
                raise KeyboardInterrupt("killed")
            self.calls.append([p.id for p in shard.problems])
            on_done(shard, [ProblemSamples(p.id, ("",) * params.n, tuple(i < successes(p) for i in range(params.n)))
                            for p in shard.problems])


def test_filter_keeps_the_problems_never_solved_and_splits_them(tmp_path: Path) -> None:
    split = run_filter(PROBLEMS, SETTINGS, tmp_path, Sampler())
    assert sorted(split.train + split.test) == ["p0", "p3", "p6", "p9"]
    assert len(split.train) == 2
    train = load_problems(str(tmp_path / "train.jsonl"))
    assert [p.id for p in train] == list(split.train) and train[0].metadata == {"level": int(train[0].id[1:]) % 3}
    counts = [json.loads(line) for line in (tmp_path / "success_counts.jsonl").read_text().splitlines()]
    assert {row["id"]: row["successes"] for row in counts} == {p.id: successes(p) for p in PROBLEMS}
    full_train = [p.id for p in load_problems(str(tmp_path / "full_train.jsonl"))]
    assert full_train == [p.id for p in PROBLEMS if p.id not in split.test]  # the pool minus the hard test half


def test_a_killed_run_resumes_without_resampling_finished_shards(tmp_path: Path) -> None:
    first = Sampler(die_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_filter(PROBLEMS, SETTINGS, tmp_path, first)
    done = {path.name: path.read_text() for path in (tmp_path / SHARDS_DIR).iterdir()}
    assert sorted(done) == ["shard_00000.jsonl", "shard_00001.jsonl"]
    second = Sampler()
    split = run_filter(PROBLEMS, SETTINGS, tmp_path, second)
    assert second.calls == [["p6", "p7", "p8"], ["p9"]]  # only the shards without a file
    assert all((tmp_path / SHARDS_DIR / name).read_text() == text for name, text in done.items())
    assert sorted(split.train + split.test) == ["p0", "p3", "p6", "p9"]
    third = Sampler()
    run_filter(PROBLEMS, SETTINGS, tmp_path, third)  # finished: nothing to sample at all
    assert third.calls == []


def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    run_filter(PROBLEMS, SETTINGS, tmp_path, Sampler())
    with pytest.raises(ResumeError, match="k: 4 before, 8 now"):
        run_filter(PROBLEMS, FilterSettings(model="m", task="math", k=8, shard_size=3), tmp_path, Sampler())
    with pytest.raises(ResumeError, match="dtype: 'bfloat16' before, 'float32' now"):
        run_filter(PROBLEMS, FilterSettings(model="m", task="math", k=4, shard_size=3, dtype="float32"), tmp_path, Sampler())
    with pytest.raises(ResumeError, match="problems"):
        run_filter(PROBLEMS[:5], SETTINGS, tmp_path, Sampler())
    assert json.loads((tmp_path / SETTINGS_FILE).read_text())["k"] == 4  # the refused runs changed nothing


def test_a_model_retrained_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    settings = FilterSettings(model=str(model), task="math", k=4, shard_size=3)
    run_filter(PROBLEMS, settings, tmp_path / "out", Sampler())
    (model / "model.safetensors").write_bytes(b"retrained")
    with pytest.raises(ResumeError, match="model_files"):
        run_filter(PROBLEMS, settings, tmp_path / "out", Sampler())

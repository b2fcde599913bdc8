"""`soar probe` on the quickstart's walk world, shortened: the real StudentPool runs the recipe's inner
job on two datasets given as files (the shortest walks through a noisy letter, labelled with their
true walks and with the base model's most common wrong walks; 1 run, 1 Q_R draw, plus the draw's
baseline job; Q_R scored by sampling), writes the report, and a second call finds every job
finished and starts nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from soar_orl.meta.walk_probe import shortest_walks, wrong_walk
from soar_orl.tasks.walk import WalkWorld, parse_question

pytestmark = pytest.mark.integration

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
Q_R_SIZE = 16
Q_R_SAMPLES = 4  # the sampled Q_R measure (student.q_r_samples); the greedy one runs in test_student_pool


def test_probe_reports_the_grounded_reward_of_each_dataset_and_resumes(tmp_path: Path) -> None:
    world = WalkWorld()
    stones = shortest_walks(world, 8, noisy=True, exclude=set())
    for name, rows in (("right", [(p.problem, p.answer) for p in stones]),
                       ("wrong", [(p.problem, wrong_walk(world, *parse_question(p.problem))) for p in stones])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    out = tmp_path / "probe"
    command = [sys.executable, "-m", "soar_orl.cli", "probe", str(RECIPE), f"data.q_r_size={Q_R_SIZE}",
               "student.inner_steps=2", "student.batch_prompts=4", "student.group_size=2", "student.train_micro_batch_size=8",
               f"student.q_r_samples={Q_R_SAMPLES}",
               "--datasets", str(tmp_path / "right.jsonl"), str(tmp_path / "wrong.jsonl"),
               "--runs", "1", "--q-r-draws", "1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    jobs = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    assert [(job["dataset"], job["steps"]) for job in jobs] == [(None, 0), ("right", 2), ("wrong", 2)]
    assert all(job["correct"] == round(job["accuracy"] * Q_R_SIZE * Q_R_SAMPLES) for job in jobs)
    assert all(len(job["correct_Q"]) == Q_R_SIZE and sum(job["correct_Q"]) == job["correct"] for job in jobs)
    report = json.loads((out / "probe.json").read_text())
    baseline = jobs[0]["accuracy"]
    for job in jobs[1:]:
        stats = report["datasets"][job["dataset"]]
        assert stats["jobs"] == 1 and stats["mean"] == pytest.approx(job["accuracy"] - baseline)
        assert stats["std"] is None and not stats["clearly_above_tau"]  # one job has no spread
    assert "| right | 8 | 1 |" in result.stdout and "| wrong | 8 | 1 |" in result.stdout
    assert f"| students | jobs | pass@1 | pass@{Q_R_SAMPLES} |" in result.stdout  # from the per-problem counts

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 already finished" in again.stderr
    assert len((out / "jobs.jsonl").read_text().splitlines()) == 3

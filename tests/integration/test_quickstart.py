"""The quickstart recipe end to end, shortened: SOAR on the walk world, then the Hard-Only and
SOAR-T students by vanilla OpenRLHF RLVR, pass@k of every method on the hard test split, the table
and the plots. The numbers of the table are recomputed here from the saved samples. SOAR-PQ (in the
recipe) trains by the same RLVR as SOAR-T on other synthetic problems (meta/promotion.py
promoted_problems, tests/unit/test_promotion.py): a third fresh student here would cost about 90 s."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from math import comb
from pathlib import Path

import pytest

from soar_orl.config import load_config
from soar_orl.meta.rlvr import prompt_budget
from soar_orl.resolve import resolve_problems

pytestmark = pytest.mark.integration

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
SAMPLES, KS = 4, (1, 4)


def unbiased_pass_at_k(n: int, c: int, k: int) -> float:
    return 1.0 - comb(n - c, k) / comb(n, k)


def test_quickstart_compares_soar_with_hard_only_on_the_hard_test_split(tmp_path: Path) -> None:
    overrides = [
        f"run.output_dir={tmp_path}", "meta.outer_steps=2", "meta.window=1", "meta.tau=-1", "meta.rlvr_steps=2", "meta.g=2", "student.inner_steps=4",
        f"evaluation.samples={SAMPLES}", f"evaluation.ks=[{','.join(map(str, KS))}]", "logging.progress_bar=false",
        "evaluation.after_run=[hard_only,teacher]",
    ]
    result = subprocess.run([sys.executable, "-m", "soar_orl.cli", "run", str(RECIPE), *overrides],
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "quickstart"
    cfg = load_config(RECIPE, overrides)
    summary = json.loads((run_dir / "eval" / "final.json").read_text())
    for method in ("base", "Hard-Only", "SOAR-PS", "SOAR-T"):
        assert f"| {method} |" in result.stdout  # the printed table has a row per method
    # The terminal has soar-orl's lines; the Ray workers' output (vLLM, DeepSpeed, OpenRLHF) is in the log.
    ray_prefix = re.compile(r"^\([A-Za-z_]\w* pid=\d+", re.MULTILINE)
    assert not ray_prefix.search(result.stdout + result.stderr)
    assert ray_prefix.search((run_dir / "logs" / "run.log").read_text())
    assert f"run directory: {run_dir} (log: {run_dir / 'logs' / 'run.log'})" in result.stdout

    # Every number of the table, recomputed from the per-sample grades on disk.
    test_ids = [p.id for p in resolve_problems(cfg.data.hard_test)]
    methods = (("base", "base"), ("Hard-Only", "hard_only"), ("SOAR-PS", "soar_ps"), ("SOAR-T", "soar_t"))
    for method, slug in methods:
        rows = [json.loads(line) for line in (run_dir / "eval" / slug / "hard_test.samples.jsonl").read_text().splitlines()]
        assert [row["id"] for row in rows] == test_ids
        assert all(len(row["correct"]) == SAMPLES for row in rows)
        for k in KS:
            expected = sum(unbiased_pass_at_k(SAMPLES, sum(row["correct"]), k) for row in rows) / len(rows)
            assert summary["pass_at_k"][method]["hard_test"][str(k)] == pytest.approx(expected)

    # tau = -1 promotes every step: SOAR-PS is the promoted student.
    promoted = [json.loads(line) for line in (run_dir / "promoted_questions.jsonl").read_text().splitlines()]
    assert [row["step"] for row in promoted] == [0, 1]
    # Each fresh student took the budget's RLVR steps in OpenRLHF (its weights need not move: RLOO
    # gives no gradient to groups whose samples all score the same, common on 0/64 problems).
    for baseline, method in (("hard_only", "Hard-Only"), ("soar_t", "SOAR-T")):
        rows = [json.loads(line) for line in (run_dir / "baselines" / baseline / "metrics.jsonl").read_text().splitlines()]
        assert [row["step"] for row in rows] == [1, 2]
        assert json.loads((run_dir / "baselines" / baseline / "method.json").read_text())["method"] == method
        assert (run_dir / "baselines" / baseline / "checkpoints" / "student" / "model.safetensors").exists()
    assert (run_dir / "checkpoints" / "baseline_student" / "model.safetensors").exists()  # SOAR-PS, an HF folder
    assert (run_dir / "plots" / "soar_curves.png").stat().st_size > 10_000
    # SOAR-T learned from questions its final teacher wrote: its set holds the budget's worth of them.
    # Every fresh student trained on exactly the budget's prompts, drawn from its set.
    budget = prompt_budget(cfg)
    teacher_set = (run_dir / "baselines" / "soar_t" / "rlvr_problems.jsonl").read_text().splitlines()
    assert len(teacher_set) == budget + len(resolve_problems(cfg.data.hard_train))
    for baseline in ("hard_only", "soar_t"):
        problem_set = set((run_dir / "baselines" / baseline / "rlvr_problems.jsonl").read_text().splitlines())
        trained = (run_dir / "baselines" / baseline / "rlvr_prompts.jsonl").read_text().splitlines()
        assert len(trained) == budget and set(trained) <= problem_set

    # `soar report` reads the numbers back from the run (pooling over seeds: tests/unit/test_report.py).
    report = subprocess.run([sys.executable, "-m", "soar_orl.cli", "report", str(run_dir), "--out", str(tmp_path / "report")],
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "report" / "report.md").read_text()
    final = summary["pass_at_k"]
    for method, label in (("base", "base"), ("Hard-Only", "Hard-Only"), ("SOAR-PS", "SOAR-PS (grounded)"),
                          ("SOAR-T", "SOAR-T (grounded)")):
        cells = [f"{100 * final[method]['hard_test'][str(k)]:.2f} ± 0.00" for k in KS]
        assert f"| {label} | 1 | " + " | ".join(cells) + " |" in text
    assert (tmp_path / "report" / "curves.png").stat().st_size > 10_000

    # `soar questions`: diversity per step and the base student's agreement with the teacher's answers.
    questions = subprocess.run([sys.executable, "-m", "soar_orl.cli", "questions", str(run_dir), "--questions", "16",
                                "--samples", "2"], capture_output=True, text=True, timeout=300)
    assert questions.returncode == 0, questions.stderr[-3000:]
    result = json.loads((run_dir / "eval" / "questions.json").read_text())
    assert sorted(result["diversity"]["per_step"]) == ["0", "1"]
    assert result["agreement"]["questions"] == 16 and 0.0 <= result["agreement"]["share"] <= 1.0


@pytest.mark.parametrize("world", ["arith", "walk"])
def test_the_oracle_trains_on_everything_but_the_hard_test_split(world: str) -> None:
    full = {p.id for p in resolve_problems(f"builtin:{world}/full_train")}
    hard_train = {p.id for p in resolve_problems(f"builtin:{world}/hard_train")}
    hard_test = {p.id for p in resolve_problems(f"builtin:{world}/hard_test")}
    assert hard_train < full and not hard_test & full
    assert len(full) > 2 * len(hard_train)  # problems the base model solves sometimes are in it too

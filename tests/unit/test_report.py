"""`soar report`: runs grouped by variant, pass@k mean and spread over runs, from the run files."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean, stdev

import yaml

from soar_orl.eval.report import RunSummary, format_report, pass_at_k_cells, write_report


def make_run(root: Path, name: str, mode: str, seed: int, pass_at_k: dict | None, rewards: list[float]) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"run": {"seed": seed}, "meta": {"mode": mode}}))
    (path / "metrics.jsonl").write_text("".join(
        json.dumps({"step": i, "reward/mean": r, "student/q_r_acc_best": r}) + "\n" for i, r in enumerate(rewards)))
    (path / "promoted_questions.jsonl").write_text(
        json.dumps({"step": 1, "reward": 0.1, "pairs": [{"question": "12+5", "answer": "17"}]}) + "\n")
    if pass_at_k is not None:
        (path / "eval").mkdir()
        (path / "eval" / "final.json").write_text(json.dumps({"pass_at_k": pass_at_k}))
    return path


def test_seeds_of_a_variant_aggregate_and_teacher_free_methods_pool_once_per_seed(tmp_path: Path) -> None:
    g0 = {"base": {"hard_test": {"1": 0.01}}, "SOAR-PS": {"hard_test": {"1": 0.05}}}
    g1 = {"base": {"hard_test": {"1": 0.03}}, "SOAR-PS": {"hard_test": {"1": 0.08}}}
    i0 = {"base": {"hard_test": {"1": 0.02}}, "SOAR-PS": {"hard_test": {"1": 0.04}}}
    paths = [make_run(tmp_path, "g0", "grounded", 0, g0, [0.0, 0.1]), make_run(tmp_path, "g1", "grounded", 1, g1, [0.2]),
             make_run(tmp_path, "i0", "intrinsic", 0, i0, [0.1]), make_run(tmp_path, "x", "grounded", 2, None, [0.3])]
    (paths[0] / "eval" / "questions.json").write_text(json.dumps(
        {"diversity": {"run": {"vendi": 12.5, "duplicate_rate": 0.1, "answer_accuracy": 0.25}}}))
    runs = [RunSummary.load(p) for p in paths]
    cells = pass_at_k_cells(runs)
    # Pooled over variants, one value per seed: i0 repeats seed 0, so its base is not counted again.
    assert cells[("base", "hard_test", "1")].values == (0.01, 0.03)
    grounded = cells[("SOAR-PS (grounded)", "hard_test", "1")]
    assert grounded.mean == mean([0.05, 0.08]) and grounded.std == stdev([0.05, 0.08])
    assert cells[("SOAR-PS (intrinsic)", "hard_test", "1")].std == 0.0
    report = format_report(runs, None)
    assert f"| SOAR-PS (grounded) | 2 | {100 * mean([0.05, 0.08]):.2f} ± {100 * stdev([0.05, 0.08]):.2f} |" in report
    assert "| 12.5 | 10.0% | 25.0% |" in report and "| - | - | - |" in report  # `soar questions` ran on g0 only
    assert f"| base | 2 | 2.00 ± {100 * stdev([0.01, 0.03]):.2f} |" in report


def test_report_writes_markdown_and_curves(tmp_path: Path) -> None:
    run = make_run(tmp_path, "g0", "grounded", 0, None, [0.0, 0.1, 0.05])
    report = write_report([run], tmp_path / "out")
    assert "set `evaluation.after_run`" in report.read_text()
    assert (tmp_path / "out" / "curves.png").stat().st_size > 5_000

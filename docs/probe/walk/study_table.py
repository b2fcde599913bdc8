"""The rung-3 study's tables from its run directories: promotions and the 8-sample final table of
each run (the quickstart's own), and pass@1/8/32 from 32 samples per hard test walk where
docs/probe/walk/eval32.sh (SOAR-PS, SOAR-PQ) and docs/probe/walk/rlvr.sh (base, Hard-Only, Oracle)
have run. Usage: python docs/probe/walk/study_table.py [RUNS_DIR]"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

MODES = (("grounded", "Grounded-T"), ("base_teacher", "Base-T"), ("intrinsic", "Intrinsic-T"))
SEEDS = (0, 1, 2)


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def per_run_table(runs: Path) -> list[str]:
    lines = ["| variant | seed | promotions (step: reward) | SOAR-PS pass@1 / @8 | SOAR-PQ pass@1 / @8 |",
             "|---|---:|---|---:|---:|"]
    for mode, name in MODES:
        for seed in SEEDS:
            final = runs / f"qs-walk-pt-{mode}-s{seed}" / "eval" / "final.json"
            if not final.exists():
                continue
            summary = json.loads(final.read_text())
            promotions = ", ".join(f"{p['step']}: {p['reward']:+.3f}" for p in summary["promotions"]) or "none"
            scores = [summary["pass_at_k"].get(method, {}).get("hard_test") for method in ("SOAR-PS", "SOAR-PQ")]
            cells = [f"{100 * s['1']:.1f} / {100 * s['8']:.1f}" if s else "-" for s in scores]
            lines.append(f"| {name} | {seed} | {promotions} | {cells[0]} | {cells[1]} |")
    return lines


def eval32_table(runs: Path) -> list[str]:
    def row(label: str, paths: list[Path]) -> str:
        found = [json.loads(p.read_text())["pass_at_k"]["hard_test"] for p in paths if p.exists()]
        columns = [[100 * run[k]["mean"] for run in found] for k in ("1", "8", "32")]
        return f"| {label} | {len(found)} | " + " | ".join(cell(c) for c in columns) + " |"

    lines = ["| method | runs | pass@1 | pass@8 | pass@32 |", "|---|---:|---:|---:|---:|",
             row("base", [runs / "walk-base-eval32" / "pass_at_k.json"])]
    for method, label in (("hard_only", "Hard-Only"), ("oracle", "Oracle")):
        lines.append(row(label, [runs / f"walk-quickstart-{method}-s{s}-eval32" / "pass_at_k.json" for s in SEEDS]))
    for mode, name in MODES:
        for student, label in (("ps", "SOAR-PS"), ("pq", "SOAR-PQ")):
            paths = [runs / f"qs-walk-pt-{mode}-s{s}-{student}-eval32" / "pass_at_k.json" for s in SEEDS]
            lines.append(row(f"{label} ({name})", paths))
    return lines


if __name__ == "__main__":
    runs_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
    print("\n".join(per_run_table(runs_dir)))
    print()
    print("\n".join(eval32_table(runs_dir)))

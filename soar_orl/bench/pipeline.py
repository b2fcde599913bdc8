"""`soar bench pipeline RECIPE`: the same recipe with meta.async true and false, measured in one run.

Runs a few outer steps of each and reads their metrics.jsonl: mean step time (the first step,
with its start-up effects, is left out) and how much of a step each pool sits idle:
teacher idle = 1 - (sampling + update) / step, student idle = 1 - worker-busy seconds / step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from statistics import mean


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", default="recipes/quickstart_arith.yaml")
    parser.add_argument("--steps", type=int, default=4, help="outer steps per mode (the first is not counted)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value")


def run(args: argparse.Namespace) -> int:
    import ray

    from soar_orl.config import load_config
    from soar_orl.meta.loop import run_soar

    output_dir = tempfile.mkdtemp(prefix="soar-bench-pipeline-")
    rows = {}
    for mode in ("false", "true"):
        cfg = load_config(args.recipe, [
            *args.overrides, f"meta.async={mode}", f"meta.outer_steps={args.steps}", f"run.output_dir={output_dir}",
            f"run.name=async_{mode}", f"meta.checkpoint_every={args.steps}", "logging.progress_bar=false",
        ])
        run_dir = run_soar(cfg)
        ray.shutdown()
        steps = [json.loads(line) for line in (run_dir.path / "metrics.jsonl").read_text().splitlines()][1:]
        step_s = mean(s["time/step"] for s in steps)
        rows[f"meta.async={mode}"] = (
            step_s,
            mean(1 - (s["time/teacher_sampling"] + s["time/teacher_update"]) / s["time/step"] for s in steps),
            mean(1 - s["time/students_busy"] / s["time/step"] for s in steps),
            mean(s["time/teacher_sampling"] for s in steps),
            mean(s["time/students_busy"] for s in steps),
            mean(s["time/teacher_update"] for s in steps),
        )
    print(f"\n{args.recipe}: {args.steps - 1} measured outer steps per mode")
    print("| mode | step s | teacher idle | student pool idle | teacher sampling s | student busy s | teacher update s |")
    print("|---|---|---|---|---|---|---|")
    for mode, (step_s, t_idle, s_idle, sampling, busy, update) in rows.items():
        print(f"| {mode} | {step_s:.1f} | {t_idle:.0%} | {s_idle:.0%} | {sampling:.1f} | {busy:.1f} | {update:.1f} |")
    sync_s, async_s = rows["meta.async=false"][0], rows["meta.async=true"][0]
    print(f"\nasync / sync step time: {async_s / sync_s:.2f}")
    return 0

"""The `soar` command line. `run.sh` sets up the environment and calls it.

    soar config RECIPE [key.sub=value ...]   print the resolved, validated config
    soar run RECIPE [key.sub=value ...]      run a recipe
    soar bench student-pool [--jobs N ...]   persistent student pool vs fresh engines per job
    soar bench pipeline [RECIPE]             meta.async true vs false: step time, pool idle time
    soar pretrain-arith [--rebuild]          the arithmetic world: base model, its measures, hard split
    soar report RUN_DIR [RUN_DIR ...]        runs side by side: pass@k mean/spread, curves, promotions

Heavy libraries are imported inside the commands that need them, so `--help` and config
validation are instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from soar_orl.config import ConfigError, dump_config, load_config


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML, e.g. recipes/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def cmd_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.recipe, args.overrides)
    print(dump_config(cfg), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.recipe, args.overrides)
    logging.basicConfig(level=cfg.logging.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.meta.uses_teacher:
        from soar_orl.meta.loop import run_soar as run_recipe
    else:
        from soar_orl.meta.rlvr import run_rlvr as run_recipe
    run_dir = run_recipe(cfg)
    if cfg.evaluation.after_run:
        from soar_orl.meta.comparison import run_comparison

        run_comparison(cfg, run_dir.path)
    elif cfg.meta.uses_teacher:
        from soar_orl.eval.plots import plot_soar_curves

        print(f"curves: {plot_soar_curves(run_dir.read_jsonl('metrics.jsonl'), cfg.meta.tau, run_dir.path / 'plots')}")
    print(f"run directory: {run_dir.path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from soar_orl.bench import pipeline, student_pool

    return {"student-pool": student_pool.run, "pipeline": pipeline.run}[args.benchmark](args)


def cmd_pretrain_arith(args: argparse.Namespace) -> int:
    from soar_orl.tasks.arith_hard import pretrain_arith

    return pretrain_arith(rebuild=args.rebuild)


def cmd_report(args: argparse.Namespace) -> int:
    from soar_orl.eval.report import write_report

    print(f"report: {write_report(args.run_dirs, args.out)}")
    return 0


def _add_bench_parser(commands) -> None:
    from soar_orl.bench import pipeline, student_pool

    bench = commands.add_parser("bench", help="benchmarks that print a comparison table")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True)
    for name, module in (("student-pool", student_pool), ("pipeline", pipeline)):
        module.add_arguments(benchmarks.add_parser(name, help=module.__doc__.splitlines()[0]))
    bench.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soar", description="SOAR on OpenRLHF")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in [
        ("config", cmd_config, "print the resolved, validated config of a recipe"),
        ("run", cmd_run, "run a recipe"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        _add_recipe_args(sub)
        sub.set_defaults(func=func)
    _add_bench_parser(commands)
    arith = commands.add_parser(
        "pretrain-arith",
        help="pretrain (or load from cache) the arithmetic world's base model, report its accuracy per "
        "band and the teacher's valid rate, build (or load) its fail@k hard split",
    )
    arith.add_argument("--rebuild", action="store_true", help="retrain and resample even if cached")
    arith.set_defaults(func=cmd_pretrain_arith)
    report = commands.add_parser("report", help="several run directories side by side: pass@k table, curves, promotions")
    report.add_argument("run_dirs", nargs="+", type=Path, help="run directories (runs/<name>)")
    report.add_argument("--out", type=Path, default=Path("report"), help="folder for report.md and curves.png")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

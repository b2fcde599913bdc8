"""The `soar` command line. `run.sh` sets up the environment and calls it.

    soar config RECIPE [key.sub=value ...]   print the resolved, validated config
    soar run RECIPE [key.sub=value ...]      run a recipe (refused first if it cannot fit its GPUs)
    soar plan RECIPE [key.sub=value ...]     memory per GPU and process, fit or the options, time
    soar bench student-pool [--jobs N ...]   persistent student pool vs fresh engines per job
    soar bench pipeline [RECIPE]             meta.async true vs false: step time, pool idle time
    soar bench sampling [--engines 1 2 ...]  the sampling service on 1 vs 2 engines: samples per second
    soar pretrain-arith [--world W] [--rebuild]  the arithmetic world: base model, its measures, hard split
    soar pretrain-walk [--rebuild]           the walk world: base model, its measures, hard split
    soar filter PROBLEMS --model M --out D   fail@k hard set, 50/50 split, resumable, over --gpus
    soar eval --model M --test N=PATH --out D  pass@k (unbiased), mean/spread over --seeds, resumable
    soar questions RUN_DIR [--solver M]      Vendi, duplicates, answer agreement of a run's questions
    soar report RUN_DIR [RUN_DIR ...]        runs side by side: pass@k mean/spread, curves, promotions
    soar probe RECIPE [key=value ...] --datasets A.jsonl B.jsonl [--runs R] [--q-r-draws D]
                                             grounded reward of given datasets at the inner budget
    soar probe-datasets RECIPE --out DIR     a built-in world's probe datasets (hard, stones, ...)

Heavy libraries are imported inside the commands that need them, so `--help` and config
validation are instant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from soar_orl.config import ConfigError, dump_config, load_config
from soar_orl.tasks import ARITH_TASKS, TASK_NAMES


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML, e.g. recipes/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def cmd_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.recipe, args.overrides)
    print(dump_config(cfg), end="")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from soar_orl.plan import plan_recipe, recipe_shapes, render
    from soar_orl.plan.shapes import UnknownModelShape

    cfg = load_config(args.recipe, args.overrides)
    try:
        shapes = recipe_shapes(cfg)
    except UnknownModelShape as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    plan = plan_recipe(cfg, shapes)
    print(render(plan, args.recipe))
    return 0 if plan.fits else 1


def cmd_run(args: argparse.Namespace) -> int:
    from soar_orl.backend import resolve_backend
    from soar_orl.console import console_session, log_to, terminal_out
    from soar_orl.plan import check_fits

    cfg = load_config(args.recipe, args.overrides)
    # The run's terminal: soar-orl's own lines; the rest goes to its log once the run directory exists.
    with console_session(cfg.logging):
        # Before anything starts: a recipe that cannot fit its GPUs would fail hours in (RecipeDoesNotFit).
        logging.getLogger("soar").info(check_fits(cfg, resolve_backend(cfg.backend)))
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

            curves = plot_soar_curves(run_dir.read_jsonl("metrics.jsonl"), cfg.meta.tau, run_dir.path / "plots")
            print(f"curves: {curves}", file=terminal_out())
        log_file = log_to(run_dir.path)
        print(f"run directory: {run_dir.path}" + (f" (log: {log_file})" if log_file else ""), file=terminal_out())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from soar_orl.bench import pipeline, sampling, student_pool

    return {"student-pool": student_pool.run, "pipeline": pipeline.run, "sampling": sampling.run}[args.benchmark](args)


def cmd_pretrain_arith(args: argparse.Namespace) -> int:
    from soar_orl.eval.arith_hard import pretrain_arith

    return pretrain_arith(args.world, rebuild=args.rebuild)


def cmd_pretrain_walk(args: argparse.Namespace) -> int:
    from soar_orl.eval.walk_hard import pretrain_walk

    return pretrain_walk(rebuild=args.rebuild)


def cmd_filter(args: argparse.Namespace) -> int:
    from soar_orl.eval.filter import FilterSettings, run_filter
    from soar_orl.resolve import resolve_model, resolve_problems

    problems = resolve_problems(args.problems)[: args.limit]
    settings = FilterSettings(model=resolve_model(args.model), task=args.task, k=args.k, temperature=args.temperature,
                              max_tokens=args.max_tokens, seed=args.seed, dtype=args.dtype,
                              max_model_len=args.max_model_len, shard_size=args.shard_size,
                              keep_responses=args.keep_responses)
    with _sampling_service(args, settings.model) as service, _refusal_is_an_error():
        split = run_filter(problems, settings, args.out, service)
    print(f"{len(problems)} problems, {len(split.train) + len(split.test)} solved 0/{args.k}: "
          f"{len(split.train)} train / {len(split.test)} test in {args.out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from soar_orl.eval.evaluate import EvalSettings, evaluate_over_seeds, write_pass_at_k_report
    from soar_orl.resolve import resolve_model, resolve_problems

    test_sets = {}
    for spec in args.test:
        name, sep, source = spec.partition("=")
        if not sep:
            raise SystemExit(f"error: --test takes NAME=PATH, got {spec!r}")
        test_sets[name] = resolve_problems(source)[: args.limit]
    settings = EvalSettings(args.samples, tuple(args.ks), args.temperature, args.max_tokens, args.seeds[0],
                            args.dtype, args.max_model_len, args.shard_size)
    if max(settings.ks) > settings.samples:
        raise SystemExit(f"error: every k must be at most --samples ({settings.samples}), got {settings.ks}")
    with _sampling_service(args, resolve_model(args.model)) as service, _refusal_is_an_error():
        results = evaluate_over_seeds(service, test_sets, settings, args.seeds, args.out)
    sizes = {name: len(problems) for name, problems in test_sets.items()}
    print(write_pass_at_k_report(args.out, args.model, settings, args.seeds, results, sizes).read_text())
    return 0


def _sampling_service(args: argparse.Namespace, model_dir: str):
    from soar_orl.eval.sampling import SamplingService

    return SamplingService(model_dir, args.task, args.dtype, args.max_model_len, gpus=args.gpus,
                           tensor_parallel=args.tensor_parallel)


@contextlib.contextmanager
def _refusal_is_an_error():
    """An output folder of other settings ends the command with its message, not a traceback."""
    from soar_orl.eval.shards import ResumeError

    try:
        yield
    except ResumeError as err:
        raise SystemExit(f"error: {err}") from None


def _add_eval_parsers(commands) -> None:
    def sampling_args(parser: argparse.ArgumentParser, max_tokens: int, shard_size: int) -> None:
        parser.add_argument("--model", required=True, help="HF folder, hub name, or builtin:arith / builtin:smollm2")
        parser.add_argument("--task", choices=TASK_NAMES, default="math")
        parser.add_argument("--out", type=Path, required=True, help="output folder (a rerun continues it)")
        parser.add_argument("--temperature", type=float, default=1.0)
        parser.add_argument("--max-tokens", type=int, default=max_tokens, help="longest sampled answer")
        parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
        parser.add_argument("--max-model-len", type=int, default=2048)
        parser.add_argument("--limit", type=int, default=None, help="only the first N problems of each file")
        parser.add_argument("--shard-size", type=int, default=shard_size, help="problems per resumable shard")
        parser.add_argument("--gpus", type=int, default=None,
                            help="GPUs for the sampling engines (default: all of the Ray cluster's; on CPU, 1 declared)")
        parser.add_argument("--tensor-parallel", type=int, default=None,
                            help="GPUs per engine (default: 1, more only if the weights do not fit one GPU)")

    filt = commands.add_parser("filter", help="fail@k hard set: k samples per problem, keep 0/k, split 50/50 (resumable)")
    filt.add_argument("problems", help="problem file (JSONL/Parquet with id, problem, answer) or builtin: set")
    sampling_args(filt, 1024, 32)
    filt.add_argument("--k", type=int, default=128, help="samples per problem (paper: 128)")
    filt.add_argument("--seed", type=int, default=0, help="seeds every problem's samples and the split")
    filt.add_argument("--keep-responses", action="store_true", help="keep every sampled text in the shards")
    filt.set_defaults(func=cmd_filter)

    ev = commands.add_parser("eval", help="pass@k of a model on test sets, mean and spread over seeds (resumable)")
    ev.add_argument("--test", action="append", required=True, metavar="NAME=PATH", help="a test set (repeatable)")
    sampling_args(ev, 1024, 16)
    ev.add_argument("--samples", type=int, default=32, help="samples per problem (paper: 32)")
    ev.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    ev.add_argument("--seeds", type=int, nargs="+", default=[0])
    ev.set_defaults(func=cmd_eval)


def cmd_questions(args: argparse.Namespace) -> int:
    import random

    from soar_orl.config import load_config
    from soar_orl.eval import questions
    from soar_orl.eval.sampling import generate, start_engine, stop_engine
    from soar_orl.resolve import resolve_model
    from soar_orl.tasks import build_task

    cfg = load_config(args.run_dir / "config.yaml")
    task = build_task(cfg.data.task)
    steps = questions.pairs_by_step(args.run_dir, task)
    if not any(steps.values()):
        raise SystemExit(f"error: {args.run_dir} has no valid teacher samples (teacher_samples/step_N.jsonl)")
    promoted = questions.promoted_pairs(args.run_dir)
    result = {"run_dir": str(args.run_dir), "diversity": questions.diversity(task, steps),
              "promoted": questions.summarise(task, promoted) if promoted else None}
    if args.samples > 0:
        solver = args.solver or cfg.model.student
        generated = [pair for pairs in steps.values() for pair in pairs]
        # Seeded samples of at most --questions each; one engine call answers both sets.
        checked = {name: random.Random(0).sample(pairs, min(args.questions, len(pairs)))
                   for name, pairs in (("generated", generated), ("promoted", promoted))}
        asked = checked["generated"] + checked["promoted"]
        llm = start_engine(resolve_model(solver), cfg.model.dtype, cfg.model.max_model_len)
        try:
            responses = generate(llm, [task.student_prompt(p.question) for p in asked], args.samples,
                                 cfg.student.temperature, cfg.student.max_new_tokens)
        finally:
            stop_engine(llm)
        answered = len(checked["generated"])
        result["agreement"] = {"solver": solver, "samples": args.samples, "questions": answered,
                               "share": questions.agreement(task, checked["generated"], responses[:answered])}
        if promoted:
            result["promoted"]["agreement"] = {
                "questions": len(checked["promoted"]),
                "share": questions.agreement(task, checked["promoted"], responses[answered:])}
    print(questions.write_questions_report(args.run_dir, result).read_text())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from soar_orl.eval.report import write_report

    print(f"report: {write_report(args.run_dirs, args.out)}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    import shlex

    from soar_orl.meta.probe import run_probe

    cfg = load_config(args.recipe, args.overrides)
    logging.basicConfig(level=cfg.logging.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = args.out or Path(cfg.run.output_dir) / f"probe-{cfg.run.name}"
    command = shlex.join(["bash", "run.sh", "probe", args.recipe, *args.overrides, "--datasets", *map(str, args.datasets),
                          "--runs", str(args.runs), "--q-r-draws", str(args.q_r_draws), "--out", str(out)])
    print(run_probe(cfg, args.datasets, args.runs, args.q_r_draws, out, command))
    print(f"probe report: {out}")
    return 0


def cmd_probe_datasets(args: argparse.Namespace) -> int:
    from soar_orl.meta import arith_probe, walk_probe

    cfg = load_config(args.recipe, args.overrides)
    if cfg.data.task == "walk":
        print(walk_probe.write_probe_datasets(cfg, args.out))
    elif cfg.data.task in ARITH_TASKS:
        print(arith_probe.write_probe_datasets(cfg, args.out))
    else:
        raise SystemExit(f"error: probe-datasets knows the built-in worlds only, {args.recipe} has data.task={cfg.data.task}")
    return 0


def _add_probe_parsers(commands) -> None:
    probe = commands.add_parser("probe", help="the recipe's inner job on datasets given as files: grounded reward and its noise")
    _add_recipe_args(probe)
    probe.add_argument("--datasets", nargs="+", required=True,
                       help="JSONL files of {question (or problem), answer} rows, named by their file stem, "
                            "or built-in sets (builtin:arith/edge_full_train), named by their split")
    probe.add_argument("--runs", type=int, default=1, help="trained students per dataset and Q_R draw")
    probe.add_argument("--q-r-draws", type=int, default=2, help="independent Q_R samples of data.hard_train")
    probe.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_OUTPUT_DIR/probe-RUN_NAME)")
    probe.set_defaults(func=cmd_probe)
    data = commands.add_parser("probe-datasets", help="write a built-in world's probe datasets (meta.n rows each)")
    _add_recipe_args(data)
    data.add_argument("--out", type=Path, required=True, help="output folder")
    data.set_defaults(func=cmd_probe_datasets)


def _add_bench_parser(commands) -> None:
    from soar_orl.bench import pipeline, sampling, student_pool

    bench = commands.add_parser("bench", help="benchmarks that print a comparison table")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True)
    for name, module in (("student-pool", student_pool), ("pipeline", pipeline), ("sampling", sampling)):
        module.add_arguments(benchmarks.add_parser(name, help=module.__doc__.splitlines()[0]))
    bench.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soar", description="SOAR on OpenRLHF")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in [
        ("config", cmd_config, "print the resolved, validated config of a recipe"),
        ("run", cmd_run, "run a recipe"),
        ("plan", cmd_plan, "memory per GPU of every pool, fit or refusal with the options, projected time"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        _add_recipe_args(sub)
        sub.set_defaults(func=func)
    _add_bench_parser(commands)
    _add_eval_parsers(commands)
    _add_probe_parsers(commands)
    arith = commands.add_parser(
        "pretrain-arith",
        help="pretrain (or load from cache) the arithmetic world's base model, report its accuracy per "
        "band and the teacher's valid rate, build (or load) its fail@k hard split",
    )
    arith.add_argument("--world", choices=tuple(ARITH_TASKS), default="arith",
                       help="which base model: `arith-lsd` answers units first (builtin:arith-lsd)")
    arith.add_argument("--rebuild", action="store_true", help="retrain and resample even if cached")
    arith.set_defaults(func=cmd_pretrain_arith)
    walk = commands.add_parser(
        "pretrain-walk",
        help="pretrain (or load from cache) the walk world's base model, report its success per walk length "
        "and the teacher's valid and right rates, build (or load) its fail@k hard split",
    )
    walk.add_argument("--rebuild", action="store_true", help="retrain and resample even if cached")
    walk.set_defaults(func=cmd_pretrain_walk)
    quest = commands.add_parser("questions", help="diversity (Vendi, duplicates) and answer agreement of a run's questions")
    quest.add_argument("run_dir", type=Path, help="a SOAR run directory (runs/<name>)")
    quest.add_argument("--solver", default=None, help="model whose majority answer is compared (default: the base student)")
    quest.add_argument("--samples", type=int, default=8, help="solver samples per question (0: skip the agreement)")
    quest.add_argument("--questions", type=int, default=256,
                       help="questions checked for agreement, of all generated and of the promoted ones (seeded samples)")
    quest.set_defaults(func=cmd_questions)
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

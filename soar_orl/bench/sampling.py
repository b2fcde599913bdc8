"""`soar bench sampling`: the same sampling work on 1 and on 2 engines, measured in one run.

The sampling service of `soar filter`, `soar eval` and a run's final evaluation
(eval/sampling.py) samples and grades the same shards once per engine count, in one local Ray
cluster (declared GPUs on CPU). Prints per engine count: start-up seconds (engines up), sampling
seconds, samples per second, and whether the graded counts equal those of the first row (the
samples are seeded per problem, so they should, up to vLLM's own nondeterminism). Default work:
the arithmetic world's base model on its hard test split (embedded, no download).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from soar_orl.tasks import TASK_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", type=int, nargs="+", default=[1, 2], help="engine counts to compare")
    parser.add_argument("--model", default="builtin:arith")
    parser.add_argument("--task", choices=TASK_NAMES, default="arith")
    parser.add_argument("--problems", default="builtin:arith/hard_test")
    parser.add_argument("--limit", type=int, default=64, help="first N problems")
    parser.add_argument("--samples", type=int, default=32, help="samples per problem")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="float32")
    parser.add_argument("--max-model-len", type=int, default=256)


def run(args: argparse.Namespace) -> int:
    import ray

    from soar_orl.backend import init_ray, resolve_backend
    from soar_orl.eval.sampling import SamplingParams, SamplingService
    from soar_orl.eval.shards import plan_shards, shard_file
    from soar_orl.resolve import resolve_model, resolve_problems

    backend = resolve_backend()
    problems = resolve_problems(args.problems)[: args.limit]
    model_dir = resolve_model(args.model)
    params = SamplingParams(args.samples, 1.0, args.max_tokens)
    shards = plan_shards(problems, args.shard_size, 0, lambda i: shard_file(Path(tempfile.gettempdir()), i))
    init_ray(backend, declared_gpus=max(args.engines))
    rows = []
    try:
        for engines in args.engines:
            counts: dict[str, int] = {}
            started = time.perf_counter()
            with SamplingService(model_dir, args.task, args.dtype, args.max_model_len, gpus=engines,
                                 tensor_parallel=1) as service:
                service.start()
                up = time.perf_counter()
                service.sample_shards(shards, params, lambda shard, samples: counts.update(
                    {s.problem_id: s.num_correct for s in samples}))
                done = time.perf_counter()
            rows.append((engines, up - started, done - up, counts))
    finally:
        ray.shutdown()

    total = len(problems) * args.samples
    print(f"\n{len(problems)} problems x {args.samples} samples (at most {args.max_tokens} tokens) of {args.model}, "
          f"{len(shards)} shards of {args.shard_size}, {backend} backend")
    print("| engines | start-up s | sampling s | samples/s | correct samples | counts equal to the first row |")
    print("|---|---|---|---|---|---|")
    first = rows[0][3]
    for engines, startup, sampling, counts in rows:
        print(f"| {engines} | {startup:.1f} | {sampling:.1f} | {total / sampling:.1f} | {sum(counts.values())} | "
              f"{'yes' if counts == first else f'no ({sum(counts[i] != first[i] for i in first)} problems differ)'} |")
    base = rows[0][2]
    for engines, _, sampling, _ in rows[1:]:
        print(f"\n{engines} engines / {rows[0][0]}: {base / sampling:.2f}x the samples per second")
    return 0

"""`soar bench student-pool`: the same g*r inner jobs run two ways, measured in one run.

- fresh: a new worker (DeepSpeed engine + vLLM engine) for every job, as a naive inner loop
  that launches one training run per dataset would do;
- persistent: one pool whose workers keep their engines and only reset weights between jobs.

Prints jobs per minute for both and where the time goes (start-up, reset, rollout, training,
weight sync, evaluation). Tiny random Llama, math task, CPU backend: a throughput measurement,
not a learning one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

PHASES = ("startup", "reset", "rollout", "train", "sync", "eval")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=4, help="inner jobs (g*r)")
    parser.add_argument("--steps", type=int, default=4, help="RLOO steps per job")
    parser.add_argument("--batch-prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=24)


def run(args: argparse.Namespace) -> int:
    import ray

    from soar_orl.backend import init_ray
    from soar_orl.config import PoolsConfig, StudentConfig
    from soar_orl.meta.pool import StudentPool
    from soar_orl.student.worker import StudentJob, WorkerSpec
    from soar_orl.teacher.parser import QAPair
    from soar_orl.tiny_model import make_tiny_llama

    student = StudentConfig(
        inner_steps=args.steps, batch_prompts=args.batch_prompts, group_size=args.group_size, lr=1e-4,
        max_new_tokens=args.max_new_tokens, train_micro_batch_size=args.batch_prompts * args.group_size,
    )
    pools = PoolsConfig(
        num_nodes=1, gpus_per_node=2, teacher_gpus=1, teacher_vllm_engines=1, student_gpus=1, cpus_per_worker=0.5
    )
    model_dir = make_tiny_llama(Path(tempfile.mkdtemp(prefix="soar-bench-")) / "tiny")
    spec = WorkerSpec(str(model_dir), "math", student, "cpu", "float32", max_model_len=256)
    pairs = tuple(QAPair(f"What is {i} + {i + 1}?", str(2 * i + 1)) for i in range(16))
    jobs = [StudentJob(f"job{i}", pairs[:8], pairs[8:], steps=args.steps, seed=i) for i in range(args.jobs)]
    init_ray("cpu", declared_gpus=pools.cluster_gpus)

    def timed_pool_run(batch: Sequence[StudentJob]) -> tuple[float, list]:
        started = time.perf_counter()
        pool = StudentPool(spec, pools)
        startup = time.perf_counter() - started
        results = pool.run(list(batch))
        pool.shutdown()
        return startup, results

    rows = {}
    started = time.perf_counter()
    fresh_startup, fresh_results = 0.0, []
    for job in jobs:
        startup, results = timed_pool_run([job])
        fresh_startup += startup
        fresh_results += results
    rows["fresh engine per job"] = (time.perf_counter() - started, fresh_startup, fresh_results)
    started = time.perf_counter()
    startup, results = timed_pool_run(jobs)
    rows["persistent pool"] = (time.perf_counter() - started, startup, results)
    ray.shutdown()

    print(f"\n{args.jobs} jobs x {args.steps} RLOO steps ({args.batch_prompts} prompts x {args.group_size} samples), "
          "1 student worker, CPU backend, tiny Llama")
    header = "| mode | wall s | jobs/min | " + " | ".join(f"{p} s" for p in PHASES) + " |"
    print(header)
    print("|" + "---|" * (3 + len(PHASES)))
    for mode, (wall, startup, results) in rows.items():
        phase = {p: sum(r.timings.get(p, 0.0) for r in results) for p in PHASES}
        phase["startup"] = startup
        cells = " | ".join(f"{phase[p]:.1f}" for p in PHASES)
        print(f"| {mode} | {wall:.1f} | {60 * len(results) / wall:.2f} | {cells} |")
    fresh_wall, persistent_wall = rows["fresh engine per job"][0], rows["persistent pool"][0]
    print(f"\npersistent pool / fresh engines: {fresh_wall / persistent_wall:.2f}x the jobs per minute")
    return 0

"""`soar bench student-pool`: the same g*r inner jobs run two ways, measured in one run.

- fresh: a new worker (DeepSpeed engine + vLLM engine) for every job, as a naive inner loop
  that launches one training run per dataset would do;
- persistent: one pool whose workers keep their engines and only reset weights between jobs.

Prints jobs per minute for both and where the time goes (start-up, reset, rollout, training,
weight sync, evaluation). Tiny random Llama, math task, CPU backend: a throughput measurement,
not a learning one.

With `--lora-rank R --students-per-worker S` it compares instead, on the model and student
settings of a recipe (default: the quickstart's arithmetic world), one persistent full
fine-tuning worker (one job at a time) with one LoRA worker (S jobs in lockstep on one base),
on the same jobs and cores; see `run_lora`.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
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
    parser.add_argument(
        "--lora-rank", type=int, default=0,
        help="> 0: compare full fine-tuning with LoRA students of this rank (settings from --recipe)",
    )
    parser.add_argument("--students-per-worker", type=int, default=16, help="LoRA jobs in lockstep (with --lora-rank)")
    parser.add_argument("--recipe", default="recipes/quickstart_arith.yaml", help="model and student settings (with --lora-rank)")
    parser.add_argument("--lora-jobs", type=int, default=None, help="jobs (with --lora-rank; default --students-per-worker)")


def run(args: argparse.Namespace) -> int:
    if args.lora_rank > 0:
        return run_lora(args)
    import ray

    from soar_orl.backend import init_ray
    from soar_orl.config import PoolsConfig, StudentConfig
    from soar_orl.formats import QAPair
    from soar_orl.meta.pool import StudentPool
    from soar_orl.student.worker import StudentJob, WorkerSpec
    from soar_orl.tiny_model import make_tiny_llama

    student = StudentConfig(
        inner_steps=args.steps, batch_prompts=args.batch_prompts, group_size=args.group_size, lr=1e-4,
        max_new_tokens=args.max_new_tokens, train_micro_batch_size=args.batch_prompts * args.group_size,
    )
    pools = PoolsConfig(
        num_nodes=1, gpus_per_node=2, teacher_gpus=1, teacher_vllm_engines=1, student_gpus=1, cpus_per_worker=0.5
    )
    model_dir = make_tiny_llama(Path(tempfile.mkdtemp(prefix="soar-bench-")) / "tiny")
    spec = WorkerSpec(str(model_dir), "math", student, "cpu", "float32", max_model_len=256,
                      gpu_memory_utilization=pools.vllm_gpu_memory_utilization, seed=0)
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


def run_lora(args: argparse.Namespace) -> int:
    """Full fine-tuning vs LoRA students: the same jobs on the same cores, one after the other.

    Each side is one Ray actor on the recipe's model: a StudentWorker (OpenRLHF Actor + DeepSpeed
    + vLLM) running the jobs one by one, then a LoRA worker running them S at a time in lockstep.
    Jobs per minute count the jobs' wall time only; start-up (Ray actor, engines; paid once per
    worker in a run of hundreds of steps) is printed beside it. The jobs: the recipe's inner job
    (student.* settings) on --lora-jobs datasets of meta.n seeded sums, each scored on a Q_R of
    data.q_r_size hard train problems.
    """
    import ray

    from soar_orl.backend import init_ray
    from soar_orl.config import derive_config, load_config
    from soar_orl.formats import QAPair
    from soar_orl.resolve import resolve_model, resolve_problems
    from soar_orl.student.lora_worker import LoraStudentWorker
    from soar_orl.student.worker import StudentJob, StudentWorker, WorkerSpec

    students = args.students_per_worker
    cfg = load_config(args.recipe)
    cfg = derive_config(cfg, {"student.lora.rank": args.lora_rank, "pools.students_per_worker": students})
    full_student = cfg.student.model_copy(update={"lora": cfg.student.lora.model_copy(update={"rank": 0})})
    model_dir = resolve_model(cfg.model.student)
    q_r = tuple(QAPair(p.problem, p.answer) for p in resolve_problems(cfg.data.hard_train)[: cfg.data.q_r_size])
    count = args.lora_jobs or students
    rng = random.Random(cfg.run.seed)
    datasets = [
        tuple(QAPair(f"{a}+{b}", str(a + b)) for a, b in ((rng.randint(0, 999), rng.randint(0, 99)) for _ in range(cfg.meta.n)))
        for _ in range(count)
    ]
    jobs = [StudentJob(f"job{i}", data, q_r, steps=cfg.student.inner_steps, seed=i) for i, data in enumerate(datasets)]
    init_ray("cpu", declared_gpus=1)

    def measure(label: str, make_actor) -> tuple[str, float, float, list]:
        started = time.perf_counter()
        actor = make_actor()
        ray.get(actor.ping.remote())
        startup = time.perf_counter() - started
        started = time.perf_counter()
        results = [result for result, _ in ray.get(actor.run_jobs.remote(jobs))]
        wall = time.perf_counter() - started
        ray.kill(actor)
        return label, wall, startup, results

    def spec(student) -> WorkerSpec:
        return dataclasses.replace(WorkerSpec.from_config(cfg, model_dir, "cpu"), student=student)

    actor_options = dict(num_gpus=1, num_cpus=1)
    rows = [
        measure(
            "full fine-tuning, 1 job at a time",
            lambda: ray.remote(StudentWorker).options(**actor_options).remote(spec(full_student)),
        ),
        measure(
            f"LoRA rank {args.lora_rank}, {students} jobs in lockstep",
            lambda: ray.remote(LoraStudentWorker).options(**actor_options).remote(spec(cfg.student), students),
        ),
    ]
    ray.shutdown()

    student = cfg.student
    print(f"\n{count} jobs x {student.inner_steps} RLOO steps ({student.batch_prompts} prompts x "
          f"{student.group_size} samples, <= {student.max_new_tokens} tokens), Q_R of {len(q_r)}; "
          f"model {cfg.model.student} from {args.recipe}; 1 worker, CPU backend")
    phases = ("reset", "rollout", "train", "sync", "eval")
    print("| mode | startup s | jobs wall s | jobs/min | " + " | ".join(f"{p} s" for p in phases) + " | mean Q_R acc |")
    print("|" + "---|" * (5 + len(phases)))
    for label, wall, startup, results in rows:
        phase = {p: sum(r.timings.get(p, 0.0) for r in results) for p in phases}
        cells = " | ".join(f"{phase[p]:.1f}" for p in phases)
        accuracy = sum(r.accuracy for r in results) / len(results)
        print(f"| {label} | {startup:.1f} | {wall:.1f} | {60 * len(results) / wall:.2f} | {cells} | {accuracy:.3f} |")
    (_, full_wall, _, _), (_, lora_wall, _, _) = rows
    print(f"\nlora/full jobs-per-minute ratio: {full_wall / lora_wall:.2f}")
    return 0

"""SOAR's outer loop: a teacher writes datasets, students learn from them, the teacher is rewarded
by the students' progress on real problems they could not solve.

    bash run.sh recipes/quickstart.yaml                    # CPU, embedded arithmetic world
    bash run.sh recipes/math_grounded.yaml run.seed=1      # a Ray GPU cluster

One outer step (paper, Algorithm 1):
  1. the teacher (OpenRLHF RLOO trainer + its vLLM engines) samples g*n valid (question, answer)
     pairs from one fixed instruction, rejecting unparseable outputs;
  2. the pairs become g datasets X_1..X_g of n questions;
  3. g*r inner jobs go to the student pool: reset to the baseline student, `student.inner_steps`
     RLOO steps on X_k, greedy accuracy on Q_R (|Q_R| hard *train* problems, resampled each step);
     one more job scores the baseline itself on the same Q_R;
  4. dataset reward: grounded = mean_r(acc_after - acc_baseline); intrinsic = mean p(1-p) of the
     baseline student on X_k's own questions; base_teacher = none (the teacher stays frozen);
  5. the teacher takes its RLOO update with each sample carrying its dataset's reward;
  6. promotion: when the moving average of the teacher reward exceeds tau, the median student of
     the best dataset becomes the baseline of every worker and X_k joins the PQ archive.
With meta.async the teacher samples step t+1 while the students of step t train (one step of
policy lag, logged as time/policy_lag); otherwise steps run in strict on-policy order.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass
from statistics import mean

import ray
from tqdm import tqdm

from soar_orl.backend import init_ray, resolve_backend
from soar_orl.config import SoarConfig
from soar_orl.meta.metrics import MetricsLogger
from soar_orl.meta.promotion import PromotionParams, PromotionTracker
from soar_orl.meta.run_dir import RunDir
from soar_orl.resolve import resolve_model, resolve_problems
from soar_orl.tasks import build_task
from soar_orl.teacher.parser import QAPair
from soar_orl.teacher.rewards import grounded_reward, intrinsic_reward, per_sample_rewards
from soar_orl.teacher.sampling import RejectionSamplingError, SamplingParams, SamplingStats, rejection_sample

log = logging.getLogger("soar")


@dataclass
class TeacherBatch:
    """The g*n valid pairs of one step and where they sit among the teacher's raw samples."""

    step: int
    pairs: list[QAPair]
    indices: list[int]  # positions of the valid samples among all samples drawn for the step
    samples: list[str]  # every raw sample, valid or not
    stats: SamplingStats
    seconds: float


def run_soar(cfg: SoarConfig) -> RunDir:
    """Run (or resume) a teacher-based variant; returns the run directory."""
    from soar_orl.meta.pool import StudentPool
    from soar_orl.student.worker import StudentJob, WorkerSpec
    from soar_orl.teacher.trainer import Teacher

    meta, student = cfg.meta, cfg.student
    run_dir = RunDir(cfg)
    metrics = MetricsLogger(run_dir.path, cfg.logging)
    backend = resolve_backend(cfg.backend)
    task = build_task(cfg.data.task)
    hard_train = resolve_problems(cfg.data.hard_train)
    if len(hard_train) < cfg.data.q_r_size:
        raise ValueError(f"data.q_r_size={cfg.data.q_r_size} exceeds the {len(hard_train)} problems of {cfg.data.hard_train}")
    instruction = cfg.teacher.instruction or task.teacher_prompt()

    # ------------------------------------------------------------------ pools
    # The student pool is created first and by the driver (see the hazards in DESIGN.md).
    init_ray(backend, declared_gpus=cfg.pools.cluster_gpus, shared_dir=str(run_dir.path))
    student_dir = str(resolve_model(cfg.model.student))
    pool = StudentPool(
        WorkerSpec(student_dir, cfg.data.task, student, backend, cfg.model.dtype, cfg.model.max_model_len,
                   cfg.pools.vllm_gpu_memory_utilization, cfg.run.seed),
        cfg.pools,
    )
    tracker = PromotionTracker(PromotionParams(window=meta.window, tau=meta.tau))
    start_step = 0
    teacher_dir = str(resolve_model(cfg.model.teacher))
    state = run_dir.load_loop_state() if cfg.run.resume else None
    if state is not None:
        start_step = state["next_step"]
        tracker.load_state_dict(state["promotion"])
        if run_dir.latest_teacher() is not None:
            teacher_dir = str(run_dir.latest_teacher())
        baseline = run_dir.load_baseline()
        if baseline is not None:
            pool.set_baseline(baseline)
        run_dir.truncate_jsonl("metrics.jsonl", keep_steps_below=start_step)
        run_dir.truncate_jsonl("promoted_questions.jsonl", keep_steps_below=start_step)
        log.info("resuming %s at step %d with %d promotions", run_dir.path, start_step, len(tracker.archive))
    teacher = Teacher(cfg, backend, teacher_dir, str(run_dir.teacher_staging_dir), str(run_dir.teacher_optimizer_dir),
                      resume_tag=_checkpoint_tag(start_step) if state is not None else None)

    def sample_teacher(step: int) -> TeacherBatch:
        started = time.perf_counter()
        drawn: list[str] = []

        def sample(k: int) -> list[tuple[int, str]]:
            texts = teacher.sample(instruction, k, step)
            drawn.extend(texts)
            return list(enumerate(texts, start=len(drawn) - len(texts)))

        try:
            result = rejection_sample(
                sample, lambda out: task.parse_teacher_output(out[1]), meta.g * meta.n,
                SamplingParams(cfg.teacher.max_attempts_factor),
            )
        except RejectionSamplingError:
            # Keep what the teacher wrote: it is what one needs to see to fix the prompt or model.
            run_dir.write_teacher_samples(step, [{"step": step, "index": i, "text": t, "valid": False}
                                                 for i, t in enumerate(drawn)])
            raise
        return TeacherBatch(step, result.pairs, [i for i, _ in result.outputs], drawn, result.stats,
                            time.perf_counter() - started)

    # ------------------------------------------------------------------ the loop
    promotions_so_far = len(tracker.archive)
    pending = None
    progress = tqdm(range(start_step, meta.outer_steps), initial=start_step, total=meta.outer_steps,
                    desc="SOAR outer steps", disable=not cfg.logging.progress_bar)
    try:
        for step in progress:
            step_started = time.perf_counter()
            batch = pending if pending is not None else sample_teacher(step)
            pending = None
            datasets_G = [batch.pairs[k * meta.n : (k + 1) * meta.n] for k in range(meta.g)]
            rng = random.Random(f"{cfg.run.seed}/q_r/{step}")
            q_r = tuple(QAPair(p.problem, p.answer) for p in rng.sample(hard_train, cfg.data.q_r_size))
            steps = student.inner_steps + (student.extra_steps_after_promotion if promotions_so_far else 0)
            presample = meta.intrinsic_samples if meta.mode == "intrinsic" else 0
            baseline_future = pool.submit(StudentJob(f"s{step}-baseline", datasets_G[0], q_r, 0, seed=0))
            futures_GR = [
                [
                    pool.submit(StudentJob(f"s{step}-x{k}-r{j}", tuple(datasets_G[k]), q_r, steps,
                                           seed=_job_seed(cfg.run.seed, step, k, j),
                                           return_weights=True, presample_n=presample))
                    for j in range(meta.r)
                ]
                for k in range(meta.g)
            ]
            students_started = time.perf_counter()
            if meta.async_ and step + 1 < meta.outer_steps:
                pending = sample_teacher(step + 1)  # overlaps with the students of this step
            baseline = baseline_future.result()
            results_GR = [[f.result() for f in row] for row in futures_GR]
            student_seconds = time.perf_counter() - students_started
            accs_GR = [[res.accuracy for res in row] for row in results_GR]

            # --- rewards and the teacher update
            if meta.mode == "intrinsic":
                rewards_G = [
                    mean(intrinsic_reward([c / presample for c in res.presample_correct_N]) for res in row)
                    for row in results_GR
                ]
            else:
                rewards_G = [grounded_reward(accs, baseline.accuracy) for accs in accs_GR]
            update_started = time.perf_counter()
            if meta.trains_teacher:
                teacher_status = teacher.update(step, batch.indices, per_sample_rewards(rewards_G, meta.n))
            else:
                teacher.discard(step)
                teacher_status = {}
            update_seconds = time.perf_counter() - update_started

            # --- promotion
            decision = tracker.observe(step, rewards_G, accs_GR, datasets_G)
            if decision.promoted is not None:
                entry = decision.promoted
                weights = pool.fetch_weights(results_GR[entry.dataset_index][entry.run_index])
                pool.set_baseline(weights)
                run_dir.save_baseline(weights)
                run_dir.append_jsonl("promoted_questions.jsonl", {
                    "step": step, "reward": entry.reward, "student_accuracy": entry.student_accuracy,
                    "dataset_index": entry.dataset_index, "run_index": entry.run_index,
                    "pairs": [asdict(p) for p in entry.pairs],
                })
                promotions_so_far = len(tracker.archive)

            # --- records
            run_dir.write_teacher_samples(step, _sample_rows(batch, meta.n, rewards_G))
            row = {
                "step": step,
                **{f"reward/dataset_{k}": r for k, r in enumerate(rewards_G)},
                "reward/mean": mean(rewards_G),
                **decision.metrics(),
                **batch.stats.metrics(),
                "student/q_r_acc_baseline": baseline.accuracy,
                **{f"student/q_r_acc/dataset_{k}": mean(accs) for k, accs in enumerate(accs_GR)},
                "student/q_r_acc_mean": mean(a for row_ in accs_GR for a in row_),
                "student/q_r_acc_best": max(a for row_ in accs_GR for a in row_),
                "student/inner_steps": steps,
                "student/job_retries": sum(res.attempts - 1 for row_ in results_GR for res in row_),
                **{f"teacher/{k}": v for k, v in teacher_status.items() if isinstance(v, (int, float))},
                "time/teacher_sampling": batch.seconds,
                "time/students": student_seconds,
                # Seconds the pool's workers spent on this step's jobs, per worker.
                "time/students_busy": sum(sum(res.timings.values()) for res in [baseline, *sum(results_GR, [])])
                / pool.num_workers,
                "time/teacher_update": update_seconds,
                "time/step": time.perf_counter() - step_started,
                "time/policy_lag": 1 if meta.async_ and step > start_step else 0,
                "pool/utilisation": pool.utilisation(),
            }
            metrics.log(step, row)
            progress.set_postfix(reward=f"{row['reward/mean']:.3f}", promotions=promotions_so_far)
            if (step + 1) % meta.checkpoint_every == 0 or step + 1 == meta.outer_steps:
                if meta.trains_teacher:
                    teacher.save(_checkpoint_tag(step + 1))
                    run_dir.publish_teacher()
                run_dir.save_loop_state({"next_step": step + 1, "promotion": tracker.state_dict()})
    finally:
        metrics.close()
        teacher.shutdown()
        pool.shutdown()
        ray.shutdown()  # leaves the GPUs to what runs next (e.g. the evaluation.after_run baselines)
    return run_dir


def _sample_rows(batch: TeacherBatch, n: int, rewards_G: list[float]) -> list[dict]:
    """Every raw sample of the step; valid ones carry their dataset and its reward."""
    dataset_of = {sample_index: pos // n for pos, sample_index in enumerate(batch.indices)}
    rows = []
    for i, text in enumerate(batch.samples):
        k = dataset_of.get(i)
        rows.append({"step": batch.step, "index": i, "text": text, "valid": k is not None,
                     "dataset": k, "reward": rewards_G[k] if k is not None else None})
    return rows


def _job_seed(seed: int, step: int, k: int, j: int) -> int:
    """Distinct, reproducible seeds for the r runs of each dataset of each step."""
    return (seed * 1_000_003 + step * 10_007 + k * 101 + j) % 2**31


def _checkpoint_tag(next_step: int) -> str:
    """The name of the teacher's optimizer checkpoint saved with the loop state of `next_step`."""
    return f"next_step_{next_step}"

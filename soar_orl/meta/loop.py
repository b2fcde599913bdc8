"""SOAR's outer loop: a teacher writes datasets, students learn from them, the teacher is rewarded
by the students' progress on real problems they could not solve.

    bash run.sh recipes/quickstart.yaml                    # CPU, embedded walk world
    bash run.sh recipes/math_grounded.yaml run.seed=1      # a Ray GPU cluster

One outer step (paper, Algorithm 1; `OuterLoop.step`):
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
policy lag, logged as teacher/policy_lag); otherwise steps run in strict on-policy order.

The run state (`RunState`: next step, promotion tracker with the PQ archive, baseline student,
teacher checkpoint) is committed as one unit (`RunDir.commit`) every `meta.checkpoint_every` steps,
after the last step and after every promotion. A resume continues from the last committed state.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from statistics import mean
from typing import Any

from tqdm import tqdm

from soar_orl.backend import init_ray, resolve_backend
from soar_orl.config import MetaConfig, SoarConfig
from soar_orl.console import log_to, terminal_err
from soar_orl.formats import QAPair
from soar_orl.meta.metrics import MetricsLogger
from soar_orl.meta.promotion import PromotionDecision, PromotionTracker
from soar_orl.meta.run_dir import RunDir, RunState
from soar_orl.resolve import resolve_model, resolve_problems
from soar_orl.student.worker import JobResult, StudentJob, WorkerSpec
from soar_orl.tasks import build_task
from soar_orl.tasks.base import Problem, Task
from soar_orl.teacher.rewards import grounded_reward, intrinsic_reward, per_sample_rewards
from soar_orl.teacher.sampling import RejectionSamplingError, SamplingStats, rejection_sample

log = logging.getLogger("soar")


# ----------------------------------------------------------------------------- the run


def run_soar(cfg: SoarConfig) -> RunDir:
    """Run (or resume) a teacher-based variant; returns the run directory."""
    import ray

    from soar_orl.meta.pool import StudentPool
    from soar_orl.teacher.trainer import Teacher

    meta = cfg.meta
    run_dir = RunDir(cfg)  # on resume it first refuses a changed config, touching nothing
    log_to(run_dir.path)  # from here, everything but soar-orl's own lines goes to the run's log
    state = RunState(PromotionTracker(meta), meta.trains_teacher)
    baseline = run_dir.resume(state) if cfg.run.resume else None
    backend = resolve_backend(cfg.backend)
    task = build_task(cfg.data.task)
    hard_train = resolve_problems(cfg.data.hard_train)
    if len(hard_train) < cfg.data.q_r_size:
        raise ValueError(f"data.q_r_size={cfg.data.q_r_size} exceeds the {len(hard_train)} problems of {cfg.data.hard_train}")

    # The student pool is created first and by the driver (see the hazards in DESIGN.md).
    log.info("set-up 1/3: Ray (%s, %d GPU(s))", backend, cfg.pools.cluster_gpus)
    init_ray(backend, declared_gpus=cfg.pools.cluster_gpus, shared_dir=str(run_dir.path))
    student_dir = str(resolve_model(cfg.model.student))
    log.info("set-up 2/3: the student pool (%d worker(s): DeepSpeed and vLLM each)", cfg.pools.student_workers)
    pool = StudentPool(
        WorkerSpec.from_config(cfg, student_dir, backend),
        cfg.pools,
    )
    if baseline is not None:
        pool.set_baseline(baseline)
    # A resumed teacher starts from the committed HF weights and continues with the optimizer,
    # LR schedule and weights of the DeepSpeed checkpoint committed with them.
    teacher_dir = run_dir.teacher_dir if state.teacher_tag else resolve_model(cfg.model.teacher)
    log.info("set-up 3/3: the teacher (OpenRLHF RLOO on %d GPU(s), %d vLLM engine(s))%s", cfg.pools.teacher_gpus,
             cfg.pools.teacher_vllm_engines, ", on the student pool's GPU" if cfg.pools.share_gpu else "")
    teacher = Teacher(cfg, backend, str(teacher_dir), str(run_dir.teacher_staging_dir),
                      str(run_dir.teacher_optimizer_dir), resume_tag=state.teacher_tag)
    try:
        OuterLoop(cfg, task, hard_train, teacher, pool, run_dir, student_dir).run(state)
    finally:
        teacher.shutdown()
        pool.shutdown()
        ray.shutdown()  # leaves the GPUs to what runs next (e.g. the evaluation.after_run baselines)
    return run_dir


def must_commit(result: StepResult, meta: MetaConfig) -> bool:
    """Whether the state after this step is committed. A promotion always is: the baseline it
    makes is committed with the tracker that made it and the teacher of the same step, so a
    resume never pairs a new baseline with an old tracker or teacher (the cheaper alternative,
    committing the baseline alone, would need the resumed loop to start from two steps at once)."""
    next_step = result.step + 1
    return (result.decision.promoted is not None or next_step % meta.checkpoint_every == 0
            or next_step == meta.outer_steps)


# ----------------------------------------------------------------------------- one outer step


@dataclass
class TeacherBatch:
    """The g*n valid pairs of one step and where they sit among the teacher's raw samples."""

    step: int
    pairs: list[QAPair]
    indices: list[int]  # positions of the valid samples among all samples drawn for the step
    samples: list[str]  # every raw sample, valid or not
    stats: SamplingStats
    seconds: float


@dataclass
class StepResult:
    """What one outer step did; its metrics and records are functions of it."""

    step: int
    batch: TeacherBatch
    datasets_G: list[list[QAPair]]
    inner_steps: int  # RLOO steps of each inner job
    baseline: JobResult  # the untrained baseline student on Q_R
    results_GR: list[list[JobResult]]
    rewards_G: list[float]
    decision: PromotionDecision
    teacher_status: dict[str, Any]  # OpenRLHF's training status of the teacher update ({} if frozen)
    policy_lag: int  # 1: the batch was sampled before the teacher's previous update (meta.async)
    seconds: dict[str, float]  # students, teacher_update, step
    pool_workers: int
    pool_utilisation: float  # share of worker time on jobs since the pool started

    @property
    def accs_GR(self) -> list[list[float]]:
        return [[res.accuracy for res in row] for row in self.results_GR]


class OuterLoop:
    """The outer steps of a run and what they use: the config, the task, the hard train split
    that Q_R is drawn from, the teacher and the student pool (duck-typed: tests drive steps with
    fakes), the run directory, the base student's folder (the config and tokenizer of the saved
    baseline students), and the batch that meta.async samples one step ahead."""

    def __init__(self, cfg: SoarConfig, task: Task, hard_train: list[Problem], teacher, pool, run_dir: RunDir,
                 student_dir: str) -> None:
        self.cfg, self.task, self.hard_train = cfg, task, hard_train
        self.teacher, self.pool, self.run_dir, self.student_dir = teacher, pool, run_dir, student_dir
        self.instruction = cfg.teacher.instruction or task.teacher_prompt()
        self.pending: TeacherBatch | None = None

    def run(self, state: RunState) -> None:
        """Steps state.next_step .. meta.outer_steps - 1, each recorded, committed when due."""
        meta = self.cfg.meta
        metrics = MetricsLogger(self.run_dir.path, self.cfg.logging)
        progress = tqdm(range(state.next_step, meta.outer_steps), initial=state.next_step,
                        total=meta.outer_steps, desc="SOAR outer steps", file=terminal_err(),
                        disable=not self.cfg.logging.progress_bar)
        try:
            for step in progress:
                result = self.step(state, step)
                record_step(self.run_dir, metrics, result, meta.n)
                progress.set_postfix(reward=f"{mean(result.rewards_G):.3f}",
                                     promotions=len(state.tracker.archive))
                if must_commit(result, meta):
                    self.commit(state)
        finally:
            metrics.close()

    def commit(self, state: RunState) -> None:
        """The state after the last step, whole: teacher (HF folder and DeepSpeed checkpoint),
        baseline student, tracker and counters (see RunDir.commit)."""
        with self.run_dir.commit(state, self.student_dir):
            if self.cfg.meta.trains_teacher:
                # Its HF folder goes to run_dir.teacher_staging_dir, its DeepSpeed checkpoint
                # (tagged) to run_dir.teacher_optimizer_dir.
                self.teacher.save(state.teacher_tag)

    def step(self, state: RunState, step: int) -> StepResult:
        """Outer step `step` (Algorithm 1). Updates `state` in memory to the state after it
        (tracker, baseline, next_step); committing it is the caller's."""
        meta, cfg = self.cfg.meta, self.cfg
        started = time.perf_counter()
        # 1-2. g*n valid pairs, g datasets of n (sampled during the previous step with meta.async)
        lagged = self.pending is not None
        batch = self.pending if lagged else self.sample_teacher(step)
        self.pending = None
        datasets_G = [batch.pairs[k * meta.n : (k + 1) * meta.n] for k in range(meta.g)]

        # 3. the inner jobs; every job of the step is scored on the same Q_R
        rng = random.Random(f"{cfg.run.seed}/q_r/{step}")
        q_r = tuple(QAPair(p.problem, p.answer) for p in rng.sample(self.hard_train, cfg.data.q_r_size))
        extra = cfg.student.extra_steps_after_promotion if state.tracker.archive else 0
        inner_steps = cfg.student.inner_steps + extra
        presample = meta.intrinsic_samples if meta.mode == "intrinsic" else 0
        jobs = [StudentJob(f"s{step}-baseline", tuple(datasets_G[0]), q_r, 0, seed=0)] + [
            StudentJob(f"s{step}-x{k}-r{j}", tuple(datasets_G[k]), q_r, inner_steps,
                       seed=_job_seed(cfg.run.seed, step, k, j), return_weights=True, presample_n=presample)
            for k in range(meta.g)
            for j in range(meta.r)
        ]
        baseline_future, *futures = self.pool.submit_many(jobs)  # together: LoRA workers batch them
        futures_GR = [futures[k * meta.r : (k + 1) * meta.r] for k in range(meta.g)]
        students_started = time.perf_counter()
        if meta.async_ and step + 1 < meta.outer_steps:
            self.pending = self.sample_teacher(step + 1)  # overlaps with the students of this step
        baseline = baseline_future.result()
        results_GR = [[future.result() for future in row] for row in futures_GR]
        student_seconds = time.perf_counter() - students_started
        accs_GR = [[res.accuracy for res in row] for row in results_GR]

        # 4. dataset rewards
        if meta.mode == "intrinsic":
            rewards_G = [
                mean(intrinsic_reward([c / presample for c in res.presample_correct_N]) for res in row)
                for row in results_GR
            ]
        else:
            rewards_G = [grounded_reward(accs, baseline.accuracy) for accs in accs_GR]

        # 5. the teacher update
        update_started = time.perf_counter()
        if meta.trains_teacher:
            teacher_status = self.teacher.update(step, batch.indices, per_sample_rewards(rewards_G, meta.n))
        else:
            self.teacher.discard(step)
            teacher_status = {}
        update_seconds = time.perf_counter() - update_started

        # 6. promotion: only the promoted student's weights leave its worker
        decision = state.tracker.observe(step, rewards_G, accs_GR, datasets_G)
        if decision.promoted is not None:
            entry = decision.promoted
            weights = self.pool.fetch_weights(results_GR[entry.dataset_index][entry.run_index])
            self.pool.set_baseline(weights)
            state.promote(step, weights)
        state.next_step = step + 1
        return StepResult(
            step, batch, datasets_G, inner_steps, baseline, results_GR, rewards_G, decision, teacher_status,
            policy_lag=int(lagged),
            seconds={"students": student_seconds, "teacher_update": update_seconds,
                     "step": time.perf_counter() - started},
            pool_workers=self.pool.num_workers, pool_utilisation=self.pool.utilisation(),
        )

    def sample_teacher(self, step: int) -> TeacherBatch:
        """Teacher samples until g*n of them parse (paper: rejection sampling of invalid outputs)."""
        started = time.perf_counter()
        drawn: list[str] = []

        def sample(k: int) -> list[tuple[int, str]]:
            texts = self.teacher.sample(self.instruction, k, step)
            drawn.extend(texts)
            return list(enumerate(texts, start=len(drawn) - len(texts)))

        meta = self.cfg.meta
        try:
            result = rejection_sample(
                sample, lambda out: self.task.parse_teacher_output(out[1]), meta.g * meta.n,
                self.cfg.teacher.max_attempts_factor,
            )
        except RejectionSamplingError:
            # Keep what the teacher wrote: it is what one needs to see to fix the prompt or model.
            self.run_dir.write_teacher_samples(step, [{"step": step, "index": i, "text": t, "valid": False}
                                                      for i, t in enumerate(drawn)])
            raise
        return TeacherBatch(step, result.pairs, [i for i, _ in result.outputs], drawn, result.stats,
                            time.perf_counter() - started)


# ----------------------------------------------------------------------------- records


def record_step(run_dir: RunDir, metrics: MetricsLogger, result: StepResult, n: int) -> None:
    """The step's rows: the promoted dataset, every teacher sample, the metrics line."""
    entry = result.decision.promoted
    if entry is not None:
        run_dir.append_jsonl("promoted_questions.jsonl", entry.to_row())
    run_dir.write_teacher_samples(result.step, _sample_rows(result.batch, n, result.rewards_G))
    metrics.log(result.step, step_metrics(result))


def step_metrics(result: StepResult) -> dict[str, float]:
    """The metrics.jsonl line of a step (namespaced keys, see README)."""
    accs_GR = result.accs_GR
    all_results = [result.baseline, *(res for row in result.results_GR for res in row)]
    return {
        "step": result.step,
        **{f"reward/dataset_{k}": r for k, r in enumerate(result.rewards_G)},
        "reward/mean": mean(result.rewards_G),
        **result.decision.metrics(),
        **result.batch.stats.metrics(),
        "student/q_r_acc_baseline": result.baseline.accuracy,
        **{f"student/q_r_acc/dataset_{k}": mean(accs) for k, accs in enumerate(accs_GR)},
        "student/q_r_acc_mean": mean(a for row in accs_GR for a in row),
        "student/q_r_acc_best": max(a for row in accs_GR for a in row),
        "student/inner_steps": result.inner_steps,
        "student/job_retries": sum(res.attempts - 1 for row in result.results_GR for res in row),
        **{f"teacher/{k}": v for k, v in result.teacher_status.items() if isinstance(v, (int, float))},
        "time/teacher_sampling": result.batch.seconds,
        "time/students": result.seconds["students"],
        # Seconds the pool's workers spent on this step's jobs, per worker.
        "time/students_busy": sum(sum(res.timings.values()) for res in all_results) / result.pool_workers,
        "time/teacher_update": result.seconds["teacher_update"],
        "time/step": result.seconds["step"],
        "teacher/policy_lag": result.policy_lag,
        "pool/utilisation": result.pool_utilisation,
    }


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

"""A student worker: one trainable student and its colocated vLLM engine, kept alive across jobs.

A job is one inner run of SOAR: reset to the baseline student, k RLOO steps on a dataset of
(question, label) pairs, accuracy on a set of problems (Q_R: greedy, or the mean success of
sampled answers), optionally the trained weights (promotion needs them). The vanilla RLVR baselines do not use it: they run OpenRLHF's
own trainer (meta/rlvr.py). The pool (meta/pool.py) runs it as a Ray actor, one per share of the
student pool; it has no Ray imports itself so it can also be driven directly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from soar_orl.backend import Backend
from soar_orl.chat import chat_prompt
from soar_orl.config import SoarConfig, StudentConfig
from soar_orl.formats import QAPair
from soar_orl.student.engine import Generation, RolloutEngine
from soar_orl.student.policy import StateDict, StudentPolicy
from soar_orl.student.rloo import StepStats
from soar_orl.student.rollout import RolloutBatch, pack_rollouts
from soar_orl.tasks import build_task
from soar_orl.tasks.base import Outcome


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to build itself (sent to the Ray actor, so plain data). A run's
    workers take it from the recipe (`from_config`); no field has a default of its own."""

    model_dir: str
    task: str
    student: StudentConfig
    backend: Backend
    dtype: str
    max_model_len: int
    gpu_memory_utilization: float
    seed: int

    @classmethod
    def from_config(cls, cfg: SoarConfig, model_dir: str, backend: Backend) -> WorkerSpec:
        return cls(model_dir, cfg.data.task, cfg.student, backend, cfg.model.dtype, cfg.model.max_model_len,
                   cfg.pools.vllm_gpu_memory_utilization, cfg.run.seed)


@dataclass(frozen=True)
class StudentJob:
    job_id: str
    train_pairs: tuple[QAPair, ...]  # the dataset X_k (teacher pairs)
    eval_pairs: tuple[QAPair, ...]  # Q_R: scored after training (greedily unless student.q_r_samples)
    steps: int
    seed: int
    return_weights: bool = False
    presample_n: int = 0  # >0: first count correct answers in n samples per train pair (intrinsic reward)


@dataclass
class JobResult:
    job_id: str
    accuracy: float
    correct_Q: list[int]  # per eval pair: correct answers out of max(1, student.q_r_samples)
    answers_Q: list[str]  # the greedy responses they were graded on (none when Q_R is sampled)
    steps: list[StepStats]
    timings: dict[str, float]  # seconds per phase: reset, rollout, train, sync, eval
    weights: Any = None  # the pool's handle on the trained weights (job.return_weights), see pool.fetch_weights
    presample_correct_N: list[int] = field(default_factory=list)  # per train pair, before training
    attempts: int = 1


@dataclass
class _Clock:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - since
        return now


class EngineWorker:
    """What every student worker has: its task and grader, a vLLM engine started once, and the
    steps that only touch the engine (prompts, greedy answers, samples, graded rollouts)."""

    def __init__(self, spec: WorkerSpec, tokenizer, engine_cls: type[RolloutEngine], **llm_kwargs) -> None:
        self.spec = spec
        self.task = build_task(spec.task)
        self.levels = spec.student.reward
        self.tokenizer = tokenizer
        self.engine = engine_cls(
            spec.model_dir, spec.backend, spec.dtype, spec.max_model_len, spec.seed, spec.gpu_memory_utilization,
            **llm_kwargs,
        )

    def ping(self) -> bool:
        return True

    def run_jobs(self, jobs: Sequence[StudentJob]) -> list[tuple[JobResult, Any]]:
        """Each job's result and, if it asked for them, its trained weights."""
        raise NotImplementedError

    def run_batch(self, jobs: Sequence[StudentJob]) -> list:
        """run_jobs flattened to [result 0, weights 0, result 1, ...], so that the pool can ask Ray
        for one object each and leave the weights in this worker's object store until a
        promotion fetches them."""
        return [part for pair in self.run_jobs(jobs) for part in pair]

    def greedy_answers(self, pairs: Sequence[QAPair]) -> list[str]:
        """The engine's greedy response to each question (for a LoRA worker: the base's)."""
        if not pairs:
            return []
        generations = self.engine.generate(
            [self._prompt_ids(p.question) for p in pairs], n=1, temperature=0.0,
            max_tokens=self.spec.student.max_new_tokens,
        )
        return [g[0].text for g in generations]

    def sample_correct(self, pairs: Sequence[QAPair], n: int, seed: int) -> list[int]:
        """Correct samples out of n per pair at the rollout temperature (intrinsic reward, pass@k)."""
        generations = self.engine.generate(
            [self._prompt_ids(p.question) for p in pairs], n=n, temperature=self.spec.student.temperature,
            max_tokens=self.spec.student.max_new_tokens, seed=seed,
        )
        return self._correct_per_group(generations, pairs)

    def _correct_per_group(self, groups: Sequence[Sequence[Generation]], pairs: Sequence[QAPair]) -> list[int]:
        """Correct samples in each pair's group of generations."""
        texts = [g.text for group in groups for g in group]
        labels = [pair.answer for pair, group in zip(pairs, groups, strict=True) for _ in group]
        graded = iter(self.task.grade_many(texts, labels))
        return [sum(next(graded).outcome == Outcome.CORRECT for _ in group) for group in groups]

    def _correct(self, answers: Sequence[str], pairs: Sequence[QAPair]) -> list[bool]:
        graded = self.task.grade_many(answers, [p.answer for p in pairs])
        return [g.outcome == Outcome.CORRECT for g in graded]

    def _graded_rollouts(
        self, prompts: Sequence[list[int]], groups: Sequence[Sequence[Generation]], pairs: Sequence[QAPair]
    ) -> RolloutBatch:
        """A group of samples per prompt, each rewarded by grading against its pair's answer,
        packed prompt-major (the layout of OpenRLHF's RLOO groups)."""
        flat = [g for group in groups for g in group]
        labels = [pair.answer for pair, group in zip(pairs, groups, strict=True) for _ in group]
        graded = self.task.grade_many([g.text for g in flat], labels)
        return pack_rollouts(
            prompts_B=[prompt for prompt, group in zip(prompts, groups, strict=True) for _ in group],
            responses_B=[g.token_ids for g in flat],
            rewards_B=[self.levels.reward(g.outcome) for g in graded],
            pad_id=self.tokenizer.pad_token_id,
        )

    def _prompt_ids(self, question: str) -> list[int]:
        text = chat_prompt(self.tokenizer, self.task.student_prompt(question))
        return self.tokenizer(text, add_special_tokens=False).input_ids


class StudentWorker(EngineWorker):
    """A full fine-tuning student: OpenRLHF Actor + DeepSpeed engine, one job at a time."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.policy = StudentPolicy(spec.model_dir, spec.student, spec.dtype, spec.seed, spec.backend)
        # vLLM can sleep around the policy update only if the engine was started in sleep mode.
        sleep_mode = {"enable_sleep_mode": True} if spec.student.vllm_sleep else {}
        super().__init__(spec, self.policy.tokenizer, RolloutEngine, **sleep_mode)
        self._engine_holds_baseline = True

    # ------------------------------------------------------------------ baseline

    def set_baseline(self, state: StateDict) -> None:
        """Promotion: new baseline weights for every later job (and the KL anchor)."""
        self.policy.set_baseline(state)
        self._engine_holds_baseline = False
        self.reset(self.spec.student.inner_steps)

    def reset(self, steps: int) -> None:
        """Back to the baseline: trainer weights, optimizer, schedule, and the engine's weights."""
        self.policy.reset(total_steps=steps)
        if not self._engine_holds_baseline:
            self.engine.load_weights(self.policy.hf_model())
            self._engine_holds_baseline = True

    # ------------------------------------------------------------------ jobs

    def run_jobs(self, jobs: Sequence[StudentJob]) -> list[tuple[JobResult, StateDict | None]]:
        """One job at a time: a worker holds one trainable copy of the student."""
        return [self.run_job(job) for job in jobs]

    def run_job(self, job: StudentJob) -> tuple[JobResult, StateDict | None]:
        """The job's result, and its trained weights if asked for."""
        clock = _Clock()
        started = time.perf_counter()
        self.reset(job.steps)
        started = clock.add("reset", started)
        rng = random.Random(job.seed)
        presampled = []
        if job.presample_n:
            presampled = self.sample_correct(job.train_pairs, job.presample_n, job.seed)
            clock.add("presample", started)
        steps = []
        for _ in range(job.steps):
            steps.append(self._train_step(job.train_pairs, rng, clock))
        started = time.perf_counter()
        samples = self.spec.student.q_r_samples
        if samples:
            answers_Q = []
            correct_Q = self.sample_correct(job.eval_pairs, samples, seed=self.spec.seed)
        else:
            answers_Q = self.greedy_answers(job.eval_pairs)
            correct_Q = [int(c) for c in self._correct(answers_Q, job.eval_pairs)]
        clock.add("eval", started)
        result = JobResult(
            job_id=job.job_id,
            accuracy=sum(correct_Q) / max(1, max(1, samples) * len(correct_Q)),
            correct_Q=correct_Q,
            answers_Q=answers_Q,
            steps=steps,
            timings=clock.seconds,
            presample_correct_N=presampled,
        )
        return result, (self.policy.state_dict() if job.return_weights else None)

    def _train_step(self, pairs: Sequence[QAPair], rng: random.Random, clock: _Clock) -> StepStats:
        cfg = self.spec.student
        started = time.perf_counter()
        batch = _draw(pairs, cfg.batch_prompts, rng)
        prompts = [self._prompt_ids(p.question) for p in batch]
        groups = self.engine.generate(
            prompts, n=cfg.group_size, temperature=cfg.temperature, max_tokens=cfg.max_new_tokens,
            seed=rng.randrange(2**31),
        )
        rollouts = self._graded_rollouts(prompts, groups, batch)
        started = clock.add("rollout", started)
        if cfg.vllm_sleep:
            # The engine's weights go to host memory and its KV cache is freed while DeepSpeed
            # trains; the sync below then overwrites the woken weights. GPU only (config.py); the
            # engine must be started with `enable_sleep_mode=True`.
            self.engine.llm.sleep(level=1)
        stats = self.policy.train_step(rollouts)
        if cfg.vllm_sleep:
            self.engine.llm.wake_up()
        started = clock.add("train", started)
        self.engine.load_weights(self.policy.hf_model())
        self._engine_holds_baseline = False
        clock.add("sync", started)
        return stats


def _draw(pairs: Sequence[QAPair], k: int, rng: random.Random) -> list[QAPair]:
    """k pairs without replacement, cycling through shuffled copies when the dataset is smaller."""
    if not pairs:
        raise ValueError("a student job needs at least one training pair")
    drawn: list[QAPair] = []
    while len(drawn) < k:
        drawn.extend(rng.sample(list(pairs), min(len(pairs), k - len(drawn))))
    return drawn

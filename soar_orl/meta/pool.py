"""The student pool: a placement group of student workers that runs inner jobs asynchronously.

The driver creates the pool (never an actor inside a vLLM engine: OpenRLHF schedules its engines
with placement_group_capture_child_tasks=True, so actors created there would land in the
teacher's group). One bundle per worker, `pools.gpus_per_student_worker` GPUs each (declared GPUs
on the CPU backend), or the GPU's share the teacher leaves under `pools.share_gpu`. `submit` returns a Future at once; a dispatcher thread hands jobs to idle
workers, so the outer loop can keep the teacher busy meanwhile. A job that fails because its
worker died, or that runs past `pools.job_timeout_s`, is logged and retried on a fresh worker in
the same bundle, up to `pools.job_retries` times; only then does its Future fail.

With LoRA students (`student.lora.rank > 0`) each worker is a LoraStudentWorker and takes up to
`pools.students_per_worker` queued jobs at once, run in lockstep as adapters on its one base; a
batch that fails puts each of its jobs back at the front of the queue with one attempt used, and
a batch's timeout is `pools.job_timeout_s` per job in it. A LoRA job's trained weights are its adapter;
`fetch_weights` merges it into the baseline it was trained on, so that promotion installs full
weights in every worker (the base of its trainer and of its engine) as with full fine-tuning.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import ray
import torch
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from soar_orl.config import PoolsConfig
from soar_orl.student.lora_weights import AdapterWeights, merge_adapter
from soar_orl.student.lora_worker import LoraStudentWorker
from soar_orl.student.policy import StateDict
from soar_orl.student.worker import JobResult, StudentJob, StudentWorker, WorkerSpec

log = logging.getLogger(__name__)


class PoolJobError(RuntimeError):
    """A student job failed on every attempt."""


@dataclass
class _Slot:
    """One bundle of the placement group and the worker currently living in it."""

    index: int
    actor: ray.actor.ActorHandle
    baseline_version: int = 0
    busy_since: float | None = None
    busy_seconds: float = 0.0


@dataclass
class _Pending:
    job: StudentJob
    future: Future
    attempt: int = 1
    failures: list[str] = field(default_factory=list)
    result_ref: ray.ObjectRef | None = None
    weights_ref: ray.ObjectRef | None = None
    baseline_version: int = 0  # of the baseline it runs on


@dataclass(frozen=True)
class _Weights:
    """JobResult.weights of a pool job: where its trained weights wait, and on which baseline."""

    ref: ray.ObjectRef
    baseline_version: int


class StudentPool:
    def __init__(self, spec: WorkerSpec, pools: PoolsConfig, num_workers: int | None = None) -> None:
        self.spec = spec
        self.pools = pools
        self.num_workers = num_workers or pools.student_workers
        self.lora = spec.student.lora.enabled
        self.jobs_per_worker = pools.students_per_worker if self.lora else 1
        bundle = {"GPU": pools.student_bundle_gpus, "CPU": pools.cpus_per_worker}
        self.placement_group = placement_group([dict(bundle) for _ in range(self.num_workers)], strategy="PACK")
        try:
            ray.get(self.placement_group.ready(), timeout=600)
        except GetTimeoutError:
            raise RuntimeError(
                f"the student pool's placement group ({self.num_workers} x {bundle}) could not be placed: "
                f"cluster resources are {ray.cluster_resources()}"
            ) from None
        self._baseline_ref = None
        self._baseline_version = 0
        self._baseline_state: StateDict | None = None  # the current baseline (None: the spec's model)
        self.slots = [_Slot(i, self._start_worker(i)) for i in range(self.num_workers)]
        ray.get([slot.actor.ping.remote() for slot in self.slots])
        log.info("student pool: %d worker(s), %s", self.num_workers,
                 f"LoRA rank {spec.student.lora.rank}, {self.jobs_per_worker} jobs in lockstep each" if self.lora
                 else "full fine-tuning, one job at a time each")
        self.started_at = time.perf_counter()
        self.failures: list[str] = []
        self._queue: collections.deque[_Pending] = collections.deque()
        # Keyed by the first result of a batch: a worker returns all of a batch's at once.
        self._running: dict[ray.ObjectRef, tuple[_Slot, list[_Pending]]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="student-pool", daemon=True)
        self._dispatcher.start()

    # ------------------------------------------------------------------ public API

    def submit(self, job: StudentJob) -> Future:
        return self.submit_many([job])[0]

    def submit_many(self, jobs: list[StudentJob]) -> list[Future]:
        """Queue the jobs together: a LoRA worker then takes them in as few lockstep batches as
        fit (jobs submitted one by one can be dispatched one by one as they arrive)."""
        pending = [_Pending(job, Future()) for job in jobs]
        with self._lock:
            if self._closed:
                raise RuntimeError("the student pool is shut down")
            self._queue.extend(pending)
        return [item.future for item in pending]

    def run(self, jobs: list[StudentJob]) -> list[JobResult]:
        """Submit and wait; results in job order. Raises PoolJobError if a job ran out of retries."""
        return [future.result() for future in self.submit_many(jobs)]

    def fetch_weights(self, result: JobResult) -> StateDict:
        """The trained weights of a job run with return_weights (they stay in the worker's
        object store until fetched, so only promoted students travel). A LoRA job's adapter
        comes merged into the baseline it was trained on, which must still be the pool's."""
        if result.weights is None:
            raise ValueError(f"job {result.job_id} was not run with return_weights=True")
        weights = ray.get(result.weights.ref)
        if not isinstance(weights, AdapterWeights):
            return weights
        with self._lock:
            if result.weights.baseline_version != self._baseline_version:
                raise ValueError(
                    f"job {result.job_id} trained its adapter on baseline {result.weights.baseline_version}, "
                    f"the pool has moved on to baseline {self._baseline_version}: it cannot be merged"
                )
            baseline = self._baseline_state
        return merge_adapter(baseline if baseline is not None else self._initial_state(), weights)

    def set_baseline(self, state: StateDict) -> None:
        """Promotion: every worker switches to these weights before its next job."""
        with self._lock:
            self._baseline_ref = ray.put(state)
            self._baseline_version += 1
            if self.lora:
                self._baseline_state = state

    def _initial_state(self) -> StateDict:
        """The spec's model as a state dict, the baseline a first LoRA promotion merges into."""
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(self.spec.model_dir, dtype=getattr(torch, self.spec.dtype))
        return {k: v.detach() for k, v in model.state_dict().items()}

    def utilisation(self) -> float:
        """Share of worker time spent on jobs since the pool started."""
        now = time.perf_counter()
        with self._lock:
            busy = sum(s.busy_seconds + (now - s.busy_since if s.busy_since else 0.0) for s in self.slots)
        return busy / max(1e-9, (now - self.started_at) * len(self.slots))

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._queue) + [p for _, batch in self._running.values() for p in batch]
            self._queue.clear()
        self._dispatcher.join(timeout=10)
        for item in pending:
            if not item.future.done():
                item.future.set_exception(RuntimeError("the student pool was shut down"))
        for slot in self.slots:
            ray.kill(slot.actor)
        remove_placement_group(self.placement_group)

    # ------------------------------------------------------------------ dispatching

    def _start_worker(self, index: int) -> ray.actor.ActorHandle:
        actor_cls = ray.remote(LoraStudentWorker if self.lora else StudentWorker).options(
            num_gpus=self.pools.student_bundle_gpus,
            num_cpus=self.pools.cpus_per_worker,
            max_restarts=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement_group, placement_group_bundle_index=index),
        )
        spec = replace(self.spec, seed=self.spec.seed + index)
        return actor_cls.remote(spec, self.jobs_per_worker) if self.lora else actor_cls.remote(spec)

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                self._assign_idle_workers()
                refs = list(self._running)
            if not refs:
                time.sleep(0.05)
                continue
            done, _ = ray.wait(refs, num_returns=1, timeout=0.5)
            with self._lock:
                for ref in done:
                    self._collect(ref)
                self._expire_timeouts()

    def _assign_idle_workers(self) -> None:
        busy = {id(slot) for slot, _ in self._running.values()}
        for slot in self.slots:
            if not self._queue:
                return
            if id(slot) in busy:
                continue
            batch = [self._queue.popleft() for _ in range(min(self.jobs_per_worker, len(self._queue)))]
            if slot.baseline_version != self._baseline_version:
                # Actor calls run in order, so the jobs start on the new baseline.
                slot.actor.set_baseline.remote(self._baseline_ref)
                slot.baseline_version = self._baseline_version
            slot.busy_since = time.perf_counter()
            refs = slot.actor.run_batch.options(num_returns=2 * len(batch)).remote([item.job for item in batch])
            for item, result_ref, weights_ref in zip(batch, refs[::2], refs[1::2], strict=True):
                item.result_ref = result_ref
                item.weights_ref = weights_ref if item.job.return_weights else None
                item.baseline_version = slot.baseline_version
            self._running[batch[0].result_ref] = (slot, batch)

    def _collect(self, ref: ray.ObjectRef) -> None:
        slot, batch = self._running.pop(ref)
        self._mark_idle(slot)
        try:
            results: list[JobResult] = ray.get([item.result_ref for item in batch])
        except RayActorError as err:
            self._retry(slot, batch, f"worker {slot.index} died: {type(err).__name__}")
            return
        except Exception as err:  # the job itself raised: retry too, a fresh worker may succeed
            self._retry(slot, batch, f"job raised {type(err).__name__}: {err}")
            return
        for item, result in zip(batch, results, strict=True):
            result.attempts = item.attempt
            result.weights = _Weights(item.weights_ref, item.baseline_version) if item.weights_ref else None
            item.future.set_result(result)

    def _expire_timeouts(self) -> None:
        now = time.perf_counter()
        for ref, (slot, batch) in list(self._running.items()):
            limit = self.pools.job_timeout_s * len(batch)
            if slot.busy_since is not None and now - slot.busy_since > limit:
                del self._running[ref]
                self._mark_idle(slot)
                jobs = ", ".join(item.job.job_id for item in batch)
                self._retry(slot, batch, f"jobs {jobs} exceeded pools.job_timeout_s={self.pools.job_timeout_s} each")

    def _mark_idle(self, slot: _Slot) -> None:
        if slot.busy_since is not None:
            slot.busy_seconds += time.perf_counter() - slot.busy_since
            slot.busy_since = None

    def _retry(self, slot: _Slot, batch: list[_Pending], reason: str) -> None:
        ids = ", ".join(item.job.job_id for item in batch)
        message = f"student job {ids} attempt {batch[0].attempt}: {reason}; replacing worker {slot.index}"
        log.warning(message)
        self.failures.append(message)
        ray.kill(slot.actor, no_restart=True)
        slot.actor = self._start_worker(slot.index)
        slot.baseline_version = 0  # a fresh worker holds the initial weights
        for item in reversed(batch):  # back at the front of the queue, in their order
            item.failures.append(reason)
            if item.attempt > self.pools.job_retries:
                item.future.set_exception(
                    PoolJobError(f"student job {item.job.job_id} failed {item.attempt} times: {'; '.join(item.failures)}")
                )
                continue
            item.attempt += 1
            self._queue.appendleft(item)

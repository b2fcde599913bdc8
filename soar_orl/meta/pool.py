"""The student pool: a placement group of student workers that runs inner jobs asynchronously.

The driver creates the pool (never an actor inside a vLLM engine: OpenRLHF schedules its engines
with placement_group_capture_child_tasks=True, so actors created there would land in the
teacher's group). One bundle per worker, `pools.gpus_per_student_worker` GPUs each (declared GPUs
on the CPU backend). `submit` returns a Future at once; a dispatcher thread hands jobs to idle
workers, so the outer loop can keep the teacher busy meanwhile. A job that fails because its
worker died, or that runs past `pools.job_timeout_s`, is logged and retried on a fresh worker in
the same bundle, up to `pools.job_retries` times; only then does its Future fail.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from soar_orl.config import PoolsConfig
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
    weights_ref: ray.ObjectRef | None = None


class StudentPool:
    def __init__(self, spec: WorkerSpec, pools: PoolsConfig, num_workers: int | None = None) -> None:
        self.spec = spec
        self.pools = pools
        self.num_workers = num_workers or pools.student_workers
        bundle = {"GPU": pools.gpus_per_student_worker, "CPU": pools.cpus_per_worker}
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
        self.slots = [_Slot(i, self._start_worker(i)) for i in range(self.num_workers)]
        ray.get([slot.actor.ping.remote() for slot in self.slots])
        self.started_at = time.perf_counter()
        self.failures: list[str] = []
        self._queue: collections.deque[_Pending] = collections.deque()
        self._running: dict[ray.ObjectRef, tuple[_Slot, _Pending]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="student-pool", daemon=True)
        self._dispatcher.start()

    # ------------------------------------------------------------------ public API

    def submit(self, job: StudentJob) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the student pool is shut down")
            self._queue.append(_Pending(job, future))
        return future

    def run(self, jobs: list[StudentJob]) -> list[JobResult]:
        """Submit and wait; results in job order. Raises PoolJobError if a job ran out of retries."""
        return [future.result() for future in [self.submit(job) for job in jobs]]

    @staticmethod
    def fetch_weights(result: JobResult) -> StateDict:
        """The trained weights of a job run with return_weights (they stay in the worker's
        object store until fetched, so only promoted students travel)."""
        if result.weights is None:
            raise ValueError(f"job {result.job_id} was not run with return_weights=True")
        return ray.get(result.weights)

    def set_baseline(self, state: StateDict) -> None:
        """Promotion: every worker switches to these weights before its next job."""
        with self._lock:
            self._baseline_ref = ray.put(state)
            self._baseline_version += 1

    def utilisation(self) -> float:
        """Share of worker time spent on jobs since the pool started."""
        now = time.perf_counter()
        with self._lock:
            busy = sum(s.busy_seconds + (now - s.busy_since if s.busy_since else 0.0) for s in self.slots)
        return busy / max(1e-9, (now - self.started_at) * len(self.slots))

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._queue) + [p for _, p in self._running.values()]
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
        actor_cls = ray.remote(StudentWorker).options(
            num_gpus=self.pools.gpus_per_student_worker,
            num_cpus=self.pools.cpus_per_worker,
            max_restarts=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement_group, placement_group_bundle_index=index),
        )
        return actor_cls.remote(replace(self.spec, seed=self.spec.seed + index))

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
            item = self._queue.popleft()
            if slot.baseline_version != self._baseline_version:
                # Actor calls run in order, so the job starts on the new baseline.
                slot.actor.set_baseline.remote(self._baseline_ref)
                slot.baseline_version = self._baseline_version
            slot.busy_since = time.perf_counter()
            result_ref, weights_ref = slot.actor.run_job.options(num_returns=2).remote(item.job)
            item.weights_ref = weights_ref if item.job.return_weights else None
            self._running[result_ref] = (slot, item)

    def _collect(self, ref: ray.ObjectRef) -> None:
        slot, item = self._running.pop(ref)
        self._mark_idle(slot)
        try:
            result: JobResult = ray.get(ref)
        except RayActorError as err:
            self._retry(slot, item, f"worker {slot.index} died: {type(err).__name__}")
            return
        except Exception as err:  # the job itself raised: retry too, a fresh worker may succeed
            self._retry(slot, item, f"job raised {type(err).__name__}: {err}")
            return
        result.attempts = item.attempt
        result.weights = item.weights_ref
        item.future.set_result(result)

    def _expire_timeouts(self) -> None:
        now = time.perf_counter()
        for ref, (slot, item) in list(self._running.items()):
            if slot.busy_since is not None and now - slot.busy_since > self.pools.job_timeout_s:
                del self._running[ref]
                self._mark_idle(slot)
                self._retry(slot, item, f"job {item.job.job_id} exceeded pools.job_timeout_s={self.pools.job_timeout_s}")

    def _mark_idle(self, slot: _Slot) -> None:
        if slot.busy_since is not None:
            slot.busy_seconds += time.perf_counter() - slot.busy_since
            slot.busy_since = None

    def _retry(self, slot: _Slot, item: _Pending, reason: str) -> None:
        message = f"student job {item.job.job_id} attempt {item.attempt}: {reason}; replacing worker {slot.index}"
        log.warning(message)
        self.failures.append(message)
        item.failures.append(reason)
        ray.kill(slot.actor, no_restart=True)
        slot.actor = self._start_worker(slot.index)
        slot.baseline_version = 0  # a fresh worker holds the initial weights
        if item.attempt > self.pools.job_retries:
            item.future.set_exception(
                PoolJobError(f"student job {item.job.job_id} failed {item.attempt} times: {'; '.join(item.failures)}")
            )
            return
        item.attempt += 1
        self._queue.appendleft(item)

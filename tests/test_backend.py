"""backend.py: the parts that differ between CPU and GPU."""

import pytest
import torch

from soar_orl import backend


def test_resolve_backend_honours_explicit_and_env(monkeypatch):
    assert backend.resolve_backend("cpu") == "cpu"
    monkeypatch.setenv("SOAR_BACKEND", "cuda")
    assert backend.resolve_backend("auto") == "cuda"
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        backend.resolve_backend("tpu")


def test_cuda_ipc_sync_sends_every_parameter_once(monkeypatch):
    """MOCKED (CUDA IPC cannot run on a CPU machine): reduce_tensor, the physical GPU id and
    torch.cuda.synchronize are stubbed; what is checked is our side of OpenRLHF's
    WorkerWrap.update_weight_cuda_ipc contract: one call per parameter, name/dtype/shape, a
    handle keyed by GPU id, and the last call flagged."""
    import openrlhf.trainer.ray.utils as ray_utils
    import torch.multiprocessing.reductions as reductions

    monkeypatch.setattr(reductions, "reduce_tensor", lambda t: ("rebuild", (tuple(t.shape),)))
    monkeypatch.setattr(ray_utils, "get_physical_gpu_id", lambda: "GPU-0")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)

    calls = []

    class FakeLLM:
        def collective_rpc(self, method, args=()):
            calls.append((method, args))

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    backend.sync_weights_to_vllm("cuda", FakeLLM(), model, shm_dir="/unused")
    names = [name for name, _ in model.named_parameters()]
    assert [c[0] for c in calls] == ["update_weight_cuda_ipc"] * len(names)
    assert [c[1][0] for c in calls] == names
    assert all(c[1][1] == torch.float32 for c in calls)
    assert [c[1][2] for c in calls] == [tuple(p.shape) for p in model.parameters()]
    assert all(set(c[1][3]) == {"GPU-0"} for c in calls)
    assert [c[1][4] for c in calls] == [False] * (len(names) - 1) + [True]


def test_vllm_kwargs_cpu_are_eager_with_bounded_kv_cache(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    kwargs = backend.vllm_engine_kwargs("cpu", "float32", max_model_len=128, seed=3)
    assert kwargs == dict(dtype="float32", max_model_len=128, seed=3, use_tqdm_on_load=False, enforce_eager=True)
    import os

    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"

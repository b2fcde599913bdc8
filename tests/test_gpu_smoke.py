"""scripts/gpu_smoke.py: its weight comparison here, the whole smoke on a CUDA machine."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SMOKE = Path(__file__).resolve().parents[1] / "scripts" / "gpu_smoke.py"
_spec = importlib.util.spec_from_file_location("gpu_smoke", SMOKE)
smoke = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smoke)


def test_weight_comparison_uses_shared_names_and_flags_differences():
    engine = {"model.norm.weight": 12.0, "model.layers.0.self_attn.qkv_proj.weight": 3.0, "lm_head.weight": 1.0}
    trainer = {"model.norm.weight": 12.0, "model.layers.0.self_attn.q_proj.weight": 1.0, "lm_head.weight": 1.5}
    assert smoke.compare_weights(engine, trainer) == (2, ["lm_head.weight"])
    assert smoke.compare_weights(engine, dict(trainer, **{"lm_head.weight": 1.0})) == (2, [])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_full_gpu_smoke_passes():
    """The student job (CUDA-IPC sync checked inside vLLM's process) and the teacher step on one GPU."""
    done = subprocess.run([sys.executable, str(SMOKE), "--backend", "cuda"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

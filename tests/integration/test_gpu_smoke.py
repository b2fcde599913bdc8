"""scripts/gpu_smoke.py on a CUDA machine: Ray, vLLM and DeepSpeed on one GPU (skipped without one)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SMOKE = Path(__file__).resolve().parents[2] / "scripts" / "gpu_smoke.py"


@pytest.mark.integration
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_full_gpu_smoke_passes():
    """The student job (CUDA-IPC sync checked inside vLLM's process) and the teacher step on one GPU."""
    done = subprocess.run([sys.executable, str(SMOKE), "--backend", "cuda"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

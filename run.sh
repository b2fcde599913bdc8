#!/usr/bin/env bash
# soar-orl's one entry point. It sets up the environment on first use, then runs what you ask.
#
#   bash run.sh recipes/quickstart.yaml [key.sub=value ...]   run a recipe
#   bash run.sh test [pytest args]                             run the test suite
#   bash run.sh setup                                          only install (CI, cluster images)
#   bash run.sh ray-start --head|--address ADDR [args]         start Ray on this node from the venv
#   bash run.sh python SCRIPT [args]                           a Python script in the environment
#   bash run.sh COMMAND [args]                                 any `soar` command: config, eval, ...
#
# The virtual environment lives in $SOAR_ORL_CACHE (default ~/.cache/soar-orl), in a folder named
# after the backend and a hash of the pinned requirements and the install script, so every clone
# on a machine shares one install and a change of pins builds a new one. The stack is installed
# by scripts/install.sh (CPU stack without an NVIDIA GPU, CUDA stack with one; force with
# SOAR_BACKEND=cpu|cuda), then patches/ are applied to the pinned openrlhf (re-applied whenever
# patches/ changes). Later calls only compare two stamps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SOAR_ORL_CACHE:-$HOME/.cache/soar-orl}"

say() { echo "[soar-orl] $*" >&2; }
die() { say "error: $*"; exit 1; }

if [ $# -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

backend="${SOAR_BACKEND:-}"
if [ -z "$backend" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    backend=cuda
  else
    backend=cpu
  fi
fi
case "$backend" in cpu|cuda) ;; *) die "SOAR_BACKEND must be cpu or cuda, got '$backend'" ;; esac

hash_of() { cat "$@" | sha256sum | cut -c1-16; }
stack_key="$(hash_of "$ROOT"/requirements/*.txt "$ROOT/scripts/install.sh")"
VENV="$CACHE/venv-$backend-$stack_key"
mkdir -p "$CACHE"

# One installer at a time per machine: a second clone waits instead of building a twin.
exec 9>"$CACHE/install.lock"
if [ ! -f "$VENV/.soar-installed" ]; then
  say "setting up the $backend stack in $VENV (first use: about 10-15 minutes)"
  flock 9
  if [ ! -f "$VENV/.soar-installed" ]; then
    rm -rf "$VENV"
    log="$CACHE/install-$stack_key.log"
    set +e
    bash "$ROOT/scripts/install.sh" "$VENV" "$backend" 2>&1 | tee "$log" \
      | grep --line-buffered '^\[soar-orl setup\]\|^  [a-z-]* *[0-9]' >&2
    status="${PIPESTATUS[0]}"
    set -e
    if [ "$status" != 0 ]; then
      rm -rf "$VENV"
      die "installation failed; the full log is $log (last lines below)
$(tail -n 25 "$log")"
    fi
    touch "$VENV/.soar-installed"
  fi
  flock -u 9
fi

patch_key="$(hash_of "$ROOT/scripts/apply_patches.py" $(find "$ROOT/patches" -type f | sort))"
if [ "$(cat "$VENV/.soar-patches" 2>/dev/null)" != "$patch_key" ]; then
  flock 9
  "$VENV/bin/python" "$ROOT/scripts/apply_patches.py" --backend "$backend" \
    || die "applying patches/ failed (see above)"
  echo "$patch_key" >"$VENV/.soar-patches"
  flock -u 9
fi
exec 9>&-

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export SOAR_BACKEND="$backend"
case "$1" in
  setup) say "environment ready: $VENV" ;;
  test) shift; cd "$ROOT"; exec "$VENV/bin/python" -m pytest "$@" ;;
  python) shift; exec "$VENV/bin/python" "$@" ;;
  ray-start)
    # Ray workers run the Python of the `ray start` that made their node and inherit its
    # environment, not the driver's: start every node from this venv (the same path on every
    # node), with the variables the stack reads. init_ray forwards the same prefixes again.
    shift
    case "${1:-}" in
      --head|--address|--address=*) ;;
      *) die "usage: bash run.sh ray-start --head|--address HEAD_IP:6379 [more ray start options]" ;;
    esac
    forwarded="$(env | grep -o '^\(SOAR\|HF\|NCCL\|VLLM\|DS\)_[A-Za-z0-9_]*' | sort | tr '\n' ' ' || true)"
    say "ray start from $VENV (backend $backend); forwarding: ${forwarded:-no SOAR_/HF_/NCCL_/VLLM_/DS_ variables}"
    # Reap a killed worker's children (its vLLM engine keeps the GPU otherwise): backend.init_ray.
    export RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper="${RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper:-1}"
    exec "$VENV/bin/ray" start "$@" ;;
  *.yaml|*.yml) exec "$VENV/bin/python" -m soar_orl.cli run "$@" ;;
  *) exec "$VENV/bin/python" -m soar_orl.cli "$@" ;;
esac

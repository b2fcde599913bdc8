"""Checks a machine before scripts/install.sh builds the CUDA stack on it, and decides flash-attn.

    python3 scripts/cuda_preflight.py

Run by install.sh (cuda backend) before anything is downloaded, with the system Python: standard
library only. Findings go to stderr; stdout gets the decisions for install.sh, one `key=value` a
line: `flash_attn=shim` or `flash_attn=<wheel path or URL>`, and `torch_cuda_arch_list=<archs>`.
Exits 1, naming the fix, when the machine cannot build or run the pinned stack.

What is checked, and why (facts about the pinned releases, read from their wheels on
2026-12-01):
- the NVIDIA driver: PyPI torch 2.13.0 is a CUDA 13.0 build (it requires cuda-toolkit 13.0.3) and
  vllm 0.29.0's extension links libcudart.so.13; CUDA 13 runs on driver R580 or newer only.
- nvcc: DeepSpeed's FusedAdam (the GPU Adam OpenRLHF uses) is compiled at install time. DeepSpeed
  0.19.6 (op_builder/builder.py, `assert_no_cuda_mismatch`) refuses an nvcc whose major.minor
  differs from torch's CUDA, and its list of tolerated minor mismatches has no CUDA 13 entry, so
  nvcc must be 13.0 unless DS_SKIP_CUDA_CHECK=1 (same major; at your own risk).
- the GPU architectures FusedAdam is compiled for: without TORCH_CUDA_ARCH_LIST, DeepSpeed 0.19.6's
  install-time build (`get_default_compute_capabilities`) falls back to 6.0;6.1;7.0 for CUDA 13,
  which CUDA 13's nvcc no longer compiles for (it supports compute capability 7.5 and newer). So
  we pass the GPUs of this machine (nvidia-smi's compute_cap), unless TORCH_CUDA_ARCH_LIST is set.
- flash-attn 2.8.3 is on PyPI as a source distribution only; building it takes hours per node
  and no prebuilt wheel for CUDA 13 / torch 2.13 is published by its authors. By default we use
  PyTorch's SDPA attention and the padding-helper shim (patches/flash_attn_cpu_shim) on CUDA as
  on CPU; SOAR_FLASH_ATTN_WHEEL=<path or URL> of a flash-attn 2.8.3 wheel built for this torch
  and CUDA installs it instead (backend.py then selects flash_attention_2).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

TORCH_CUDA = (13, 0)  # torch==2.13.0 on PyPI (requirements/pins.txt)
MIN_DRIVER_MAJOR = 580  # first driver branch that runs CUDA 13.x
MIN_COMPUTE_CAP = (7, 5)  # the oldest architecture CUDA 13 compiles for (Turing)
FLASH_ATTN_WHEEL_ENV = "SOAR_FLASH_ATTN_WHEEL"
FORWARD_COMPAT_ENV = "SOAR_CUDA_FORWARD_COMPAT"


@dataclass
class Preflight:
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    flash_attn: str = "shim"
    arch_list: str = ""

    def decisions(self) -> str:
        return f"flash_attn={self.flash_attn}\ntorch_cuda_arch_list={self.arch_list}"


NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=driver_version,compute_cap", "--format=csv,noheader"]


def parse_gpus(nvidia_smi_out: str) -> tuple[str, list[tuple[int, int]]]:
    """NVIDIA_SMI_QUERY's output, one `580.82.07, 9.0` line per GPU -> (driver, [(9, 0), ...])."""
    rows = [line.split(",") for line in nvidia_smi_out.strip().splitlines() if line.strip()]
    if not rows or any(len(row) != 2 for row in rows):
        raise ValueError(f"cannot read driver and compute capability from nvidia-smi output {nvidia_smi_out!r}")
    driver = rows[0][0].strip()
    if not re.fullmatch(r"\d+(\.\d+)*", driver):
        raise ValueError(f"cannot read a driver version from nvidia-smi output {nvidia_smi_out!r}")
    caps = []
    for _, cap in rows:
        major, _, minor = cap.strip().partition(".")
        if not (major.isdigit() and minor.isdigit()):
            raise ValueError(f"cannot read a compute capability from nvidia-smi output {nvidia_smi_out!r}")
        caps.append((int(major), int(minor)))
    return driver, caps


def parse_nvcc_release(nvcc_out: str) -> tuple[int, int]:
    """`nvcc --version` -> (major, minor), from its `Cuda compilation tools, release 13.0, ...` line."""
    match = re.search(r"release (\d+)\.(\d+)", nvcc_out)
    if not match:
        raise ValueError(f"cannot read a CUDA release from nvcc output {nvcc_out!r}")
    return int(match.group(1)), int(match.group(2))


def find_nvcc(env: Mapping[str, str], which=shutil.which) -> str | None:
    """The nvcc DeepSpeed's build will use: torch.utils.cpp_extension takes CUDA_HOME (or
    CUDA_PATH), else the nvcc on PATH, else /usr/local/cuda."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(var):
            return str(Path(env[var]) / "bin" / "nvcc")
    on_path = which("nvcc")
    if on_path:
        return on_path
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.exists() else None


def check(driver_out: str | None, nvcc_out: str | None, env: Mapping[str, str], torch_cuda=TORCH_CUDA) -> Preflight:
    """The verdict from the outputs of NVIDIA_SMI_QUERY and `nvcc --version` (None: the command
    is missing or failed)."""
    result = Preflight()
    want = f"{torch_cuda[0]}.{torch_cuda[1]}"
    if driver_out is None:
        result.errors.append("nvidia-smi is missing or failed: no usable NVIDIA driver (or use SOAR_BACKEND=cpu)")
    else:
        shown, caps = parse_gpus(driver_out)
        _check_archs(caps, env, result)
        if int(shown.split(".")[0]) >= MIN_DRIVER_MAJOR:
            result.notes.append(f"NVIDIA driver {shown} runs CUDA {want} (needs >= {MIN_DRIVER_MAJOR})")
        elif env.get(FORWARD_COMPAT_ENV) == "1":
            result.notes.append(
                f"NVIDIA driver {shown} is older than {MIN_DRIVER_MAJOR}; continuing because "
                f"{FORWARD_COMPAT_ENV}=1 says CUDA {want} forward compatibility (cuda-compat) is set up"
            )
        else:
            result.errors.append(
                f"NVIDIA driver {shown} is too old: torch 2.13 and vllm 0.29 are CUDA {want} builds and need "
                f"driver >= {MIN_DRIVER_MAJOR}. Upgrade the driver, or on data-centre GPUs install the "
                f"cuda-compat package for CUDA {want}, put its libraries on LD_LIBRARY_PATH and set "
                f"{FORWARD_COMPAT_ENV}=1"
            )
    if nvcc_out is None:
        result.errors.append(
            f"nvcc not found (CUDA_HOME, PATH, /usr/local/cuda): DeepSpeed's FusedAdam is compiled at install "
            f"and needs the CUDA {want} toolkit; install it and set CUDA_HOME"
        )
    else:
        nvcc = parse_nvcc_release(nvcc_out)
        shown = f"{nvcc[0]}.{nvcc[1]}"
        if nvcc == tuple(torch_cuda):
            result.notes.append(f"nvcc {shown} matches torch's CUDA {want} (DeepSpeed FusedAdam will build)")
        elif nvcc[0] == torch_cuda[0] and env.get("DS_SKIP_CUDA_CHECK") == "1":
            result.notes.append(f"nvcc {shown} differs from torch's CUDA {want}; DS_SKIP_CUDA_CHECK=1 lets DeepSpeed build anyway")
        else:
            hint = (" or set DS_SKIP_CUDA_CHECK=1 to let DeepSpeed build with it (same major version, untested)"
                    if nvcc[0] == torch_cuda[0] else "")
            result.errors.append(
                f"nvcc {shown} does not match torch's CUDA {want}: DeepSpeed 0.19.6 refuses to build FusedAdam "
                f"with it. Point CUDA_HOME at a CUDA {want} toolkit{hint}"
            )
    wheel = env.get(FLASH_ATTN_WHEEL_ENV, "").strip()
    if wheel:
        result.flash_attn = wheel
        result.notes.append(f"flash-attn: installing the given wheel {wheel} (attention: flash_attention_2)")
    else:
        result.notes.append(
            f"flash-attn: none (2.8.3 is source-only on PyPI); attention: SDPA, padding helpers: the shim "
            f"(set {FLASH_ATTN_WHEEL_ENV} to a prebuilt wheel to use flash-attn)"
        )
    return result


def _check_archs(caps: list[tuple[int, int]], env: Mapping[str, str], result: Preflight) -> None:
    old = sorted({f"{a}.{b}" for a, b in caps if (a, b) < MIN_COMPUTE_CAP})
    if old:
        result.errors.append(
            f"GPU compute capability {', '.join(old)} is older than {MIN_COMPUTE_CAP[0]}.{MIN_COMPUTE_CAP[1]}: "
            "CUDA 13 (torch 2.13, vllm 0.29) does not support it"
        )
    given = env.get("TORCH_CUDA_ARCH_LIST", "").strip()
    result.arch_list = given or ";".join(f"{a}.{b}" for a, b in sorted(set(caps)))
    source = "TORCH_CUDA_ARCH_LIST" if given else "this machine's GPUs"
    result.notes.append(f"FusedAdam is compiled for compute capability {result.arch_list} ({source})")


def _output(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def main() -> int:
    env = os.environ
    driver_out = _output(NVIDIA_SMI_QUERY)
    nvcc = find_nvcc(env)
    nvcc_out = _output([nvcc, "--version"]) if nvcc else None
    result = check(driver_out, nvcc_out, env)
    for note in result.notes:
        print(f"[soar-orl setup] preflight: {note}", file=sys.stderr)
    for error in result.errors:
        print(f"[soar-orl setup] preflight error: {error}", file=sys.stderr)
    if result.errors:
        return 1
    print(result.decisions())
    return 0


if __name__ == "__main__":
    sys.exit(main())

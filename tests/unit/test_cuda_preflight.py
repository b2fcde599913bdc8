"""scripts/cuda_preflight.py on recorded command outputs (no GPU needed)."""

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "cuda_preflight", Path(__file__).resolve().parents[2] / "scripts" / "cuda_preflight.py"
)
preflight = importlib.util.module_from_spec(_spec)
sys.modules["cuda_preflight"] = preflight  # dataclasses look their module up there
_spec.loader.exec_module(preflight)

NVCC_13_0 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2025 NVIDIA Corporation
Built on Wed_Jul_16_07:30:01_PM_PDT_2025
Cuda compilation tools, release 13.0, V13.0.48
Build cuda_13.0.r13.0/compiler.36260728_0
"""
NVCC_13_1 = NVCC_13_0.replace("release 13.0, V13.0.48", "release 13.1, V13.1.80")
NVCC_12_8 = NVCC_13_0.replace("release 13.0, V13.0.48", "release 12.8, V12.8.93")
DRIVER_580 = "580.82.07, 9.0\n580.82.07, 9.0\n"  # NVIDIA_SMI_QUERY on two H100s
DRIVER_550 = "550.127.05, 8.0\n"


def test_parsers_read_real_outputs():
    assert preflight.parse_gpus(DRIVER_580) == ("580.82.07", [(9, 0), (9, 0)])
    assert preflight.parse_nvcc_release(NVCC_13_0) == (13, 0)
    with pytest.raises(ValueError):
        preflight.parse_gpus("NVIDIA-SMI has failed because it couldn't communicate with the driver")
    with pytest.raises(ValueError):
        preflight.parse_nvcc_release("bash: nvcc: command not found")


def test_good_machine_passes_and_defaults_to_the_shim():
    result = preflight.check(DRIVER_580, NVCC_13_0, env={})
    assert result.errors == []
    assert result.flash_attn == "shim"
    assert any("SDPA" in note for note in result.notes)
    assert result.decisions() == "flash_attn=shim\ntorch_cuda_arch_list=9.0"


def test_fused_adam_archs_come_from_the_gpus_unless_given_and_pre_turing_is_refused():
    mixed = "580.82.07, 8.0\n580.82.07, 9.0\n580.82.07, 8.0\n"
    assert preflight.check(mixed, NVCC_13_0, env={}).arch_list == "8.0;9.0"
    assert preflight.check(mixed, NVCC_13_0, env={"TORCH_CUDA_ARCH_LIST": "9.0+PTX"}).arch_list == "9.0+PTX"
    volta = preflight.check("580.82.07, 7.0\n", NVCC_13_0, env={})
    assert len(volta.errors) == 1 and "7.0 is older than 7.5" in volta.errors[0]


def test_old_driver_is_refused_unless_forward_compat_is_declared():
    result = preflight.check(DRIVER_550, NVCC_13_0, env={})
    assert len(result.errors) == 1 and "550.127.05 is too old" in result.errors[0]
    assert preflight.check(DRIVER_550, NVCC_13_0, env={preflight.FORWARD_COMPAT_ENV: "1"}).errors == []
    assert "no usable NVIDIA driver" in preflight.check(None, NVCC_13_0, env={}).errors[0]


def test_nvcc_must_match_torch_cuda_minor_unless_deepspeed_check_is_skipped():
    minor = preflight.check(DRIVER_580, NVCC_13_1, env={})
    assert len(minor.errors) == 1 and "DS_SKIP_CUDA_CHECK=1" in minor.errors[0]
    assert preflight.check(DRIVER_580, NVCC_13_1, env={"DS_SKIP_CUDA_CHECK": "1"}).errors == []
    major = preflight.check(DRIVER_580, NVCC_12_8, env={"DS_SKIP_CUDA_CHECK": "1"})
    assert len(major.errors) == 1 and "DS_SKIP_CUDA_CHECK" not in major.errors[0]
    assert "nvcc not found" in preflight.check(DRIVER_580, None, env={}).errors[0]


def test_a_given_flash_attn_wheel_is_installed_instead_of_the_shim():
    wheel = "https://example.org/flash_attn-2.8.3+cu130torch2.13-cp311-cp311-linux_x86_64.whl"
    result = preflight.check(DRIVER_580, NVCC_13_0, env={preflight.FLASH_ATTN_WHEEL_ENV: wheel})
    assert result.errors == [] and result.flash_attn == wheel


def test_find_nvcc_follows_torch_cpp_extension_order(tmp_path):
    assert preflight.find_nvcc({"CUDA_HOME": "/opt/cuda-13.0"}, which=lambda _: "/usr/bin/nvcc") == "/opt/cuda-13.0/bin/nvcc"
    assert preflight.find_nvcc({}, which=lambda _: "/usr/bin/nvcc") == "/usr/bin/nvcc"

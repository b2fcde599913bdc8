"""`soar plan`: the memory formulas against published figures, the recipes against their GPUs,
and `soar run` refusing a recipe that cannot fit before it starts anything."""

from __future__ import annotations

import json
import struct
import sys
import types
from math import prod
from pathlib import Path

import pytest

from soar_orl import cli
from soar_orl.config import load_config
from soar_orl.plan import apply_changes, check_fits, plan_recipe, recipe_shapes, smallest_fix
from soar_orl.plan.cost import train_seconds, waves
from soar_orl.plan.pools import plan_pools
from soar_orl.plan.memory import (
    GIB,
    TrainerSetup,
    VllmShare,
    activation_bytes,
    host_offload_bytes,
    layer_activation_bytes_per_token,
    model_states,
)
from soar_orl.plan.shapes import KNOWN_SHAPES, model_shape

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
LLAMA_3B = KNOWN_SHAPES["meta-llama/Llama-3.2-3B-Instruct"]

# Parameter counts on each model card of the Hugging Face hub (rounded as published there).
MODEL_CARD_PARAMS = {
    "meta-llama/Llama-3.2-1B-Instruct": 1.23e9,
    "meta-llama/Llama-3.2-3B-Instruct": 3.21e9,
    "meta-llama/Llama-3.1-8B-Instruct": 8.03e9,
    "Qwen/Qwen2.5-0.5B-Instruct": 0.49e9,
    "Qwen/Qwen2.5-1.5B-Instruct": 1.54e9,
    "Qwen/Qwen2.5-3B-Instruct": 3.09e9,
    "Qwen/Qwen2.5-7B-Instruct": 7.61e9,
    "HuggingFaceTB/SmolLM2-135M-Instruct": 135e6,
}


@pytest.mark.parametrize("name", MODEL_CARD_PARAMS)
def test_parameter_count_matches_the_model_card(name):
    assert KNOWN_SHAPES[name].params == pytest.approx(MODEL_CARD_PARAMS[name], rel=0.01)


def test_parameter_count_matches_a_real_checkpoint():
    # The committed arithmetic models: config.json against the tensors of the safetensors file.
    folders = sorted((ROOT / "artifacts").glob("arith-base-*"))
    assert folders
    for folder in folders:
        with open(folder / "model.safetensors", "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
        stored = sum(prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
        assert model_shape(str(folder)).params == stored


def _setup(world: int, **kw) -> TrainerSetup:
    return TrainerSetup(
        LLAMA_3B, dtype_bytes=2, zero_stage=2, world=world, micro_batch=16, seq_len=1280, **kw
    )


@pytest.mark.parametrize("world", [1, 2, 8, 24])
def test_model_states_are_deepspeeds_zero2_estimate(world):
    # deepspeed 0.19.6 runtime/zero/stage_1_and_2.py, estimate_zero2_model_states_mem_needs
    # (cpu_offload=False): gpu_mem = 4 * total_params + int(16 * total_params / total_gpus).
    # (Importing deepspeed takes ~25 s here, so the published formula is written out.)
    params = LLAMA_3B.params
    total = sum(size for size, _ in model_states(_setup(world)).values())
    assert total == pytest.approx(4 * params + int(16 * params / world), abs=world)


def test_model_states_match_the_zero_paper_and_deepspeeds_offload_estimate():
    params = LLAMA_3B.params
    states = model_states(_setup(1))
    # ZeRO paper, Sec. 3.1: mixed-precision Adam holds 2 + 2 + 12 = 16 bytes per parameter; DeepSpeed's
    # bf16 optimizer adds the fp32 gradient copy (4 bytes).
    assert sum(size for size, _ in states.values()) - states["fp32 gradients"][0] == 16 * params
    # A student worker (world size 1) at 3B: 20 bytes per parameter, 59.8 GiB before activations.
    assert sum(size for size, _ in states.values()) / GIB == pytest.approx(59.8, abs=0.05)
    # With cpu_offload=True: gpu_mem = 2 * total_params, cpu_mem = total_params * max(4 * total_gpus, 16) * 1.5.
    offloaded = _setup(1, adam_offload=True)
    assert sum(size for size, _ in model_states(offloaded).values()) == 2 * params
    assert host_offload_bytes(offloaded) == params * 16 * 1.5


def test_activations_follow_the_per_tensor_count():
    # Per token and layer for HF Llama in bf16: two RMSNorms (fp32 input + bf16 output, 6h each),
    # q/k/v input, q, k, v, attention output, MLP input (2 bytes each), four SwiGLU tensors of I.
    h, kv, inter = 3072, 8 * 128, 8192
    assert (
        layer_activation_bytes_per_token(LLAMA_3B, 2)
        == 2 * 6 * h + 2 * (4 * h + 2 * kv + 4 * inter)
        == 131_072
    )
    tokens = 16 * 1280
    head = 6 * h + 10 * 128_256  # final norm + bf16 logits, fp32 copy, fp32 gradient
    assert activation_bytes(_setup(1)) == tokens * (28 * 131_072 + head)
    checkpointed = activation_bytes(_setup(1, gradient_checkpointing=True))
    assert checkpointed == tokens * (28 * 2 * h + 131_072 + head)
    # The logits, not the layers, dominate once the layers are checkpointed.
    assert tokens * 10 * 128_256 > checkpointed / 2


def test_vllm_share_holds_weights_runtime_and_at_least_one_sequence():
    share = VllmShare(
        LLAMA_3B, 2, share_gib=0.35 * 80, tensor_parallel=1, max_model_len=2048, sequence_tokens=1280
    )
    assert LLAMA_3B.kv_bytes_per_token(2) == 2 * 28 * 8 * 128 * 2
    assert share.kv_tokens == int((28.0 - share.weights_gib - 2.0) * GIB / 114_688)
    assert share.starts and share.concurrent_sequences == share.kv_tokens // 1280
    assert not VllmShare(LLAMA_3B, 2, 0.1 * 80, 1, 2048, 1280).starts  # 8 GiB: weights and runtime only


def _plan(recipe: str, *overrides: str):
    cfg = load_config(ROOT / "recipes" / recipe, list(overrides))
    return cfg, plan_recipe(cfg, recipe_shapes(cfg))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_fits_its_declared_gpus(recipe, capsys):
    assert cli.main(["plan", str(recipe)]) == 0
    assert "fits: every GPU" in capsys.readouterr().out


def test_paper_recipe_without_adam_offload_is_refused_with_the_options(capsys):
    assert cli.main(["plan", str(ROOT / "recipes/math_grounded.yaml"), "student.adam_offload=false"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "student pool: peak" in out
    assert "fits with: student.adam_offload=true" in out
    assert "LoRA students" in out


def test_one_node_teacher_needs_its_offload():
    cfg, plan = _plan(
        "math_grounded_1node.yaml", "teacher.openrlhf_args={actor.gradient_checkpointing_enable: true}"
    )
    assert not plan.pools["teacher"].fits and plan.pools["student"].fits
    assert smallest_fix(cfg, plan.shapes, "teacher") == {"teacher.openrlhf_args.ds.adam_offload": True}


def test_student_pool_fix_prefers_fewest_changes_and_cheapest_switches():
    cfg, plan = _plan(
        "math_grounded.yaml", "student.gradient_checkpointing=false", "student.adam_offload=false"
    )
    assert smallest_fix(cfg, plan.shapes, "student") == {
        "student.gradient_checkpointing": True,
        "student.adam_offload": True,
    }


def test_waves_count_the_baseline_job():
    assert waves(load_config(ROOT / "recipes/math_grounded.yaml")) == 1  # 17 jobs, 24 workers
    assert waves(load_config(ROOT / "recipes/math_grounded_1node.yaml")) == 3  # 17 jobs, 6 workers


def test_async_overlaps_sampling_with_the_students():
    _, overlapped = _plan("math_grounded.yaml")
    _, strict = _plan("math_grounded.yaml", "meta.async=false")
    a, b = overlapped.cost.step, strict.cost.step
    assert a.step_s == pytest.approx(max(a.teacher_sampling_s, a.students_s) + a.teacher_update_s)
    assert b.step_s == pytest.approx(b.teacher_sampling_s + b.students_s + b.teacher_update_s)
    assert overlapped.cost.soar_hours < overlapped.cost.soar_hours_promoted


def test_run_refuses_before_starting_anything(monkeypatch, capsys):
    started = types.ModuleType("soar_orl.meta.loop")
    started.run_soar = lambda cfg: pytest.fail("run_soar started on a recipe that does not fit")
    monkeypatch.setitem(sys.modules, "soar_orl.meta.loop", started)
    monkeypatch.setenv("SOAR_BACKEND", "cuda")
    assert cli.main(["run", str(ROOT / "recipes/math_grounded.yaml"), "student.adam_offload=false"]) == 2
    assert "REFUSED" in capsys.readouterr().err


def test_run_check_is_skipped_on_the_cpu_backend():
    cfg = load_config(ROOT / "recipes/math_grounded.yaml", ["student.adam_offload=false"])
    assert check_fits(cfg, "cpu").startswith("memory check skipped")
    with pytest.raises(cli.ConfigError, match="REFUSED"):
        check_fits(cfg, "cuda")


def test_lora_projection_trains_without_weight_gradients_and_batches_a_workers_jobs():
    flags = {"actor.gradient_checkpointing_enable": True, "algo.kl.init_coef": 1e-3, "ds.adam_offload": False}
    full, lora = (train_seconds(LLAMA_3B, 1e5, 1, flags, forward_backward_flops=f) for f in (6, 4))
    assert lora / full == pytest.approx((4 + 2 + 2 + 2) / (6 + 2 + 2 + 2))
    _, one_node = _plan("math_grounded_1node.yaml")
    step, projected = one_node.cost.step, one_node.lora_cost.step
    assert (step.waves, step.jobs_per_worker) == (3, 1)
    # Of the layouts tried, 3 jobs per worker on ceil(17 / 3) = 6 workers (the node's student
    # GPUs) gives the fewest GPU-hours; training is projected per slot, so a wave trains 3 jobs.
    assert (projected.waves, projected.jobs_per_worker) == (1, 3)
    assert one_node.lora_changes["pools.student_gpus"] == 6
    variant = apply_changes(one_node.cfg, one_node.lora_changes)
    assert all(pool.fits for pool in plan_pools(variant, one_node.shapes).values())


def test_plan_prints_full_and_lora_gpu_hours_against_the_paper(capsys):
    assert cli.main(["plan", str(ROOT / "recipes/math_grounded.yaml")]) == 0
    out = capsys.readouterr().out
    assert "of the paper's GPU-hours" in out and "with LoRA students instead" in out
    assert "NOT IMPLEMENTED" not in out


def test_lora_recipe_fits_two_80gb_gpus_and_is_refused_on_24gb():
    cfg, plan = _plan("math_grounded_lora_2gpu.yaml")
    assert cfg.student.lora.enabled and plan.fits and plan.cost.step.jobs_per_worker == 9
    assert plan.pools["student"].vllm.lora_gib > 0 and plan.lora_cost is None  # already LoRA
    _, small = _plan("math_grounded_lora_2gpu.yaml", "pools.gpu_memory_gb=24")
    assert not small.fits and any("exceeds pools.gpu_memory_gb = 24" in p for p in small.problems())


def test_one_gpu_recipe_sums_both_pools_on_its_gpu_and_is_refused_when_they_do_not_fit(capsys):
    cfg, plan = _plan("math_grounded_lora_1gpu.yaml")
    teacher, student, shared = (plan.pools[role] for role in ("teacher", "student", "shared"))
    assert cfg.pools.share_gpu and plan.fits and cfg.pools.cluster_gpus == 1
    assert shared.peak == pytest.approx(teacher.peak + student.peak)
    step = plan.cost.step  # meta.async is on, but one GPU cannot overlap the two pools
    assert cfg.meta.async_ and step.step_s == pytest.approx(step.teacher_sampling_s + step.students_s + step.teacher_update_s)
    # Each pool alone fits 56 GiB; together they do not, and the options name both pools' switches.
    assert teacher.peak < 56 and student.peak < 56
    assert cli.main(["plan", str(ROOT / "recipes/math_grounded_lora_1gpu.yaml"), "pools.gpu_memory_gb=56"]) == 1
    out = capsys.readouterr().out
    assert "shared GPU: peak" in out and "options for the shared GPU" in out
    assert "teacher.openrlhf_args" in out and "pools.students_per_worker" in out

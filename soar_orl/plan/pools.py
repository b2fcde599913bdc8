"""The GPUs of a recipe's pools, laid out as the code launches them, with their memory.

- teacher pool (SOAR variants): `pools.teacher_gpus` GPUs, OpenRLHF colocated (`colocate_all`):
  on each GPU an actor rank (ZeRO over the pool), a reference rank and a vLLM engine shard
  (tensor parallel `teacher_gpus // teacher_vllm_engines`). Its engines never sleep: the teacher
  creates them with `vllm_enable_sleep=False` (teacher/trainer.py).
- student pool (SOAR variants): `pools.student_workers` workers; each is one DeepSpeed rank
  (world size 1, so ZeRO partitions nothing: all of Adam on one GPU), the KL reference (the
  baseline student) and one vLLM engine, all on the worker's first GPU.
- student pool with LoRA students (`student.lora.rank` > 0, student/lora_policy.py): each worker
  holds the base once in the model dtype (no DeepSpeed, no KL reference copy: the anchor is the
  base with no adapter), `pools.students_per_worker` adapters with their fp32 AdamW states (peft
  keeps adapters in fp32), and one vLLM engine with that many adapter slots. Its training pass
  takes micro batch rows of one slot through that slot's adapter, without gradient checkpointing
  (LoraPolicies enables none); its no-grad log-prob passes take the rows of students_per_worker
  micro batches but keep no activations for a backward, and their transient logits are not
  itemised. Its engine never sleeps (LoraStudentWorker starts it without sleep mode).
- one shared GPU (`pools.share_gpu`): the teacher pool and the one student worker above on one
  GPU; its peak is the sum of the two pools' peaks, as if they coincided (with meta.async the next
  step's students may train while the teacher updates; phases are not scheduled apart).
- RLVR (meta.mode hard_only / oracle, and every `evaluation.after_run` baseline): OpenRLHF's own
  Ray trainer, colocated, over `pools.rlvr_gpus` GPUs (null: `pools.student_gpus`), after the SOAR
  pools are gone.

Each pool's training options are OpenRLHF's flag names, derived from the recipe and overridden by
its passthrough (`teacher.openrlhf_args`, `student.openrlhf_args`), as the trainers do.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from soar_orl.config import SoarConfig
from soar_orl.plan.memory import (
    GIB,
    PROCESS_OVERHEAD_GIB,
    GpuMemory,
    Item,
    TrainerSetup,
    VllmShare,
    activation_bytes,
    host_offload_bytes,
    reference_items,
    trainer_items,
)
from soar_orl.plan.shapes import ModelShape
from soar_orl.student.lora_engine import vllm_max_lora_rank

PROMPT_TOKENS = 256
"""Prompt tokens assumed per sequence (chat template + a MATH problem or the teacher's
instruction; the teacher instruction is about 150 tokens with the Llama-3 header). The sequence
a trainer holds is this plus max_new_tokens, at most model.max_model_len: the worst case, since
micro batches are padded to their longest sequence and hard problems often run to the limit."""

DTYPE_BYTES = {"bfloat16": 2, "float32": 4}


def student_flags(cfg: SoarConfig) -> dict[str, Any]:
    """The student's OpenRLHF options: the student.* switches, then student.openrlhf_args."""
    student = cfg.student
    flags: dict[str, Any] = {
        "ds.zero_stage": 2,
        "train.micro_batch_size": student.train_micro_batch_size,
        "actor.gradient_checkpointing_enable": student.gradient_checkpointing,
        "ds.adam_offload": student.adam_offload,
        "vllm.enable_sleep": student.vllm_sleep,
        "ds.enable_sleep": False,
        "ref.offload": False,
        "algo.kl.init_coef": student.kl_coef,
    }
    return flags | dict(student.openrlhf_args)


def teacher_flags(cfg: SoarConfig) -> dict[str, Any]:
    flags: dict[str, Any] = {
        "ds.zero_stage": 2,
        "train.micro_batch_size": cfg.teacher.train_micro_batch_size,
        "actor.gradient_checkpointing_enable": False,
        "ds.adam_offload": False,
        "ref.offload": False,
        "algo.kl.init_coef": cfg.teacher.kl_coef,
    }
    return flags | dict(cfg.teacher.openrlhf_args)


def rlvr_gpus(cfg: SoarConfig) -> int:
    return cfg.pools.rlvr_gpus or cfg.pools.student_gpus


def sequence_tokens(cfg: SoarConfig, max_new_tokens: int) -> int:
    return min(cfg.model.max_model_len, PROMPT_TOKENS + max_new_tokens)


def _trainer(
    flags: dict[str, Any], shape: ModelShape, cfg: SoarConfig, world: int, seq_len: int
) -> TrainerSetup:
    return TrainerSetup(
        shape=shape,
        dtype_bytes=DTYPE_BYTES[cfg.model.dtype],
        zero_stage=int(flags["ds.zero_stage"]),
        world=world,
        micro_batch=int(flags["train.micro_batch_size"]),
        seq_len=seq_len,
        gradient_checkpointing=bool(flags["actor.gradient_checkpointing_enable"]),
        adam_offload=bool(flags["ds.adam_offload"]),
        states_offload_while_generating=bool(flags.get("ds.enable_sleep", False)),
    )


def _vllm(cfg: SoarConfig, shape: ModelShape, tensor_parallel: int, seq_len: int) -> VllmShare:
    pools = cfg.pools
    return VllmShare(
        shape,
        DTYPE_BYTES[cfg.model.dtype],
        pools.vllm_gpu_memory_utilization * pools.gpu_memory_gb,
        tensor_parallel,
        cfg.model.max_model_len,
        seq_len,
    )


def _colocated(
    pool: str,
    cfg: SoarConfig,
    shape: ModelShape,
    flags: dict[str, Any],
    world: int,
    tensor_parallel: int,
    max_new_tokens: int,
    vllm_sleeps: bool,
) -> GpuMemory:
    """An OpenRLHF colocate_all pool: actor rank + reference rank + vLLM shard on every GPU."""
    seq_len = sequence_tokens(cfg, max_new_tokens)
    trainer = _trainer(flags, shape, cfg, world, seq_len)
    vllm = _vllm(cfg, shape, tensor_parallel, seq_len)
    items = trainer_items("actor", trainer)
    if flags["algo.kl.init_coef"] > 0:
        items += reference_items(
            "reference",
            shape,
            trainer.dtype_bytes,
            bool(flags["ref.offload"]),
            world if trainer.zero_stage == 3 else 1,
        )
    items += vllm.items("vLLM engine", vllm_sleeps)
    layout = f"{world} GPU{'s' if world > 1 else ''}, each: actor rank + reference rank + vLLM shard (tensor parallel {tensor_parallel})"
    return GpuMemory(
        pool, layout, world, cfg.pools.gpu_memory_gb, items, vllm, host_offload_bytes(trainer) / GIB
    )


def teacher_pool(cfg: SoarConfig, shape: ModelShape) -> GpuMemory:
    pools = cfg.pools
    tensor_parallel = max(1, pools.teacher_gpus // pools.teacher_vllm_engines)
    return _colocated(
        "teacher pool",
        cfg,
        shape,
        teacher_flags(cfg),
        pools.teacher_gpus,
        tensor_parallel,
        cfg.teacher.max_new_tokens,
        vllm_sleeps=False,
    )


ADAPTER_STATE_BYTES = 16
"""Per adapter parameter on the trainer: fp32 weight, fp32 gradient, AdamW's fp32 m and v."""


def lora_student_pool(cfg: SoarConfig, shape: ModelShape) -> GpuMemory:
    pools, lora, w = cfg.pools, cfg.student.lora, DTYPE_BYTES[cfg.model.dtype]
    slots, seq_len = pools.students_per_worker, sequence_tokens(cfg, cfg.student.max_new_tokens)
    micro = int(student_flags(cfg)["train.micro_batch_size"])
    adapter = shape.lora_params(lora.rank, lora.target_modules)
    served = shape.lora_params(vllm_max_lora_rank(lora.rank), lora.target_modules)
    vllm = replace(_vllm(cfg, shape, 1, seq_len), lora_gib=slots * served * w / GIB)
    activations = activation_bytes(TrainerSetup(shape, w, 0, 1, micro, seq_len)) / GIB
    items = [
        Item("student trainer", "base weights (frozen, also the KL anchor)", w * shape.params / GIB),
        Item("student trainer", f"{slots} adapters of rank {lora.rank}: fp32 weights, gradients, AdamW",
             slots * adapter * ADAPTER_STATE_BYTES / GIB),
        Item("student trainer", f"activations (one slot's micro batch {micro} x {seq_len} tokens, "
             "no checkpointing)", activations, ("train",)),
        Item("student trainer", "CUDA context, buffers", PROCESS_OVERHEAD_GIB),
        *vllm.items("vLLM engine", sleeps_while_training=False),
    ]
    memory = GpuMemory(
        "student pool",
        f"{pools.student_workers} workers, each on one GPU: one base + {slots} LoRA adapters "
        "(trainer) + one vLLM engine serving them",
        pools.student_workers,
        pools.gpu_memory_gb,
        items,
        vllm,
    )
    ignored = [name for name, on in (("student.gradient_checkpointing", cfg.student.gradient_checkpointing),
                                     ("student.adam_offload", cfg.student.adam_offload),
                                     ("student.vllm_sleep", cfg.student.vllm_sleep)) if on]
    if ignored:
        memory.notes.append(f"{', '.join(ignored)}: not used by LoRA students (no DeepSpeed engine, no "
                            "sleep mode); they apply to the RLVR baselines only")
    return memory


def student_pool(cfg: SoarConfig, shape: ModelShape) -> GpuMemory:
    if cfg.student.lora.enabled:
        return lora_student_pool(cfg, shape)
    pools, flags = cfg.pools, student_flags(cfg)
    seq_len = sequence_tokens(cfg, cfg.student.max_new_tokens)
    trainer = _trainer(flags, shape, cfg, 1, seq_len)
    vllm = _vllm(cfg, shape, 1, seq_len)
    items = trainer_items("student trainer", trainer)
    if flags["algo.kl.init_coef"] > 0:
        items += reference_items("KL reference", shape, trainer.dtype_bytes, bool(flags["ref.offload"]))
    items += vllm.items("vLLM engine", bool(flags["vllm.enable_sleep"]))
    memory = GpuMemory(
        "student pool",
        f"{pools.student_workers} workers, each on one GPU: trainer (world size 1) + "
        "KL reference + vLLM engine",
        pools.student_workers,
        pools.gpu_memory_gb,
        items,
        vllm,
        host_offload_bytes(trainer) / GIB,
    )
    if pools.gpus_per_student_worker > 1:
        memory.notes.append(
            f"pools.gpus_per_student_worker = {pools.gpus_per_student_worker}: the student is one "
            "rank and its engine has no tensor parallelism, so each worker's other GPUs stay idle"
        )
    return memory


def rlvr_pool(cfg: SoarConfig, shape: ModelShape) -> GpuMemory:
    flags = student_flags(cfg)
    return _colocated(
        "RLVR",
        cfg,
        shape,
        flags,
        rlvr_gpus(cfg),
        cfg.pools.gpus_per_student_worker,
        cfg.student.max_new_tokens,
        vllm_sleeps=bool(flags["vllm.enable_sleep"]),
    )


def shared_gpu(cfg: SoarConfig, parts: list[GpuMemory]) -> GpuMemory:
    """The one GPU of `pools.share_gpu`: each pool held at its own peak."""
    items = [Item(part.pool, f"its peak ({part.peak_phase})", part.peak) for part in parts]
    return GpuMemory("shared GPU", " + ".join(part.pool for part in parts) + " (pools.share_gpu)", 1,
                     cfg.pools.gpu_memory_gb, items)


def plan_pools(cfg: SoarConfig, shapes: dict[str, ModelShape]) -> dict[str, GpuMemory]:
    """Every pool the recipe runs, by role ("teacher", "student", "shared", "rlvr"); `shapes`
    maps the "teacher" and "student" roles to their models."""
    found = {}
    if cfg.meta.uses_teacher:
        found["teacher"] = teacher_pool(cfg, shapes["teacher"])
        found["student"] = student_pool(cfg, shapes["student"])
        if cfg.pools.share_gpu:
            found["shared"] = shared_gpu(cfg, [found["teacher"], found["student"]])
    if cfg.runs_rlvr:
        found["rlvr"] = rlvr_pool(cfg, shapes["student"])
    return found

"""Projected time per outer step and GPU-hours of a recipe, from stated phase assumptions.

A projection, not a measurement: every number below is either a datasheet figure or an assumption
named in `PhaseAssumptions` and `LoraProjection`; nothing here has been measured on a GPU yet.
No measured phase share enters it either: the per-phase times in BENCHMARKS.md (reset, rollout,
train, sync, eval of full fine-tuning and LoRA workers) are CPU measurements of a 1M-parameter
model, compute-bound with per-op overheads, the opposite regime of memory-bound GPU decoding, so
they do not transfer to a GPU; the phases here are derived from the recipe instead. The model:

- generation (vLLM decode) is memory-bound: one decode step of a batch of b sequences with mean
  context c reads the weights and the batch's KV cache, so it takes
  max((w P / tp + b c kv) / (HBM bandwidth x decode efficiency), 2 P b / (peak FLOP/s x MFU));
  b is what the engine's KV share holds at once (memory.VllmShare.concurrent_sequences), the
  rest waits for a later round;
- training is compute-bound: 6 P per token for forward + backward, 2 P more for the recompute of
  gradient checkpointing, 2 P for the no-grad forward of the old log-probs and 2 P for the KL
  reference's, at MFU x peak over the trainer's GPUs (attention FLOPs are left out: at 1-2k
  tokens they add under 10% for 3B);
- Adam offload adds the host Adam step and moving gradients and weights over PCIe;
- an outer step: the teacher samples g*n / valid-rate outputs; g*r + 1 student jobs run in
  waves of `student_workers` (the +1 scores the baseline on Q_R); each job resets, runs
  inner_steps x (rollout + train + weight sync [+ vLLM sleep/wake]) and a greedy Q_R evaluation;
  then the teacher trains on the g*n samples. With meta.async the next step's sampling overlaps
  the students: step = max(sampling, students) + update; otherwise their sum.
- GPU-hours count the whole cluster for the run's wall time (the pools hold their GPUs
  throughout), plus the RLVR trainings of evaluation.after_run (their evaluation is left out).
- LoRA students (`student.lora.rank` > 0, or the LoRA variant `plan` projects for a full
  fine-tuning recipe): the same, changed where LoRA changes the work (`LoraProjection`): 4 P
  instead of 6 P per token for forward + backward, no recompute, a cheap reset and sync, no Adam
  offload, and up to `pools.students_per_worker` jobs of a worker in one wave, their rollouts in
  one batch of its engine (the KV cache still bounds that batch). Training is compute-bound, so it is
  projected per slot (each job's tokens, summed over the wave's jobs): the same whether the
  worker trains its slots in one mixed-adapter batch or one pass per slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from soar_orl.config import SoarConfig
from soar_orl.plan.memory import GpuMemory, VllmShare
from soar_orl.plan.pools import PROMPT_TOKENS, rlvr_gpus, student_flags, teacher_flags
from soar_orl.plan.shapes import ModelShape

PAPER_GPU_HOURS = (32 * 48, 32 * 60)
"""SOAR paper (Sundaram et al., ICML 2026), compute: one SOAR run took 48-60 hours on 4 nodes x 8
H100/H200 GPUs (Llama-3.2-3B-Instruct, 200 outer steps at most)."""


@dataclass(frozen=True)
class PhaseAssumptions:
    gpu: str = "H100 SXM"
    """The GPU the times are projected for."""
    peak_tflops: float = 989.0
    """Dense BF16 tensor-core peak of the H100 SXM (NVIDIA H100 datasheet)."""
    hbm_tb_per_s: float = 3.35
    """HBM3 bandwidth of the H100 SXM (NVIDIA H100 datasheet)."""
    train_mfu: float = 0.35
    """Share of the peak a DeepSpeed ZeRO-2 step of a 1-8B model reaches. Assumption: large-model
    training commonly reports 30-50%; short RL micro batches are at the low end."""
    decode_efficiency: float = 0.5
    """Share of the HBM bandwidth a vLLM decode step reaches. Assumption."""
    student_output_fraction: float = 0.6
    """Mean student response length as a share of student.max_new_tokens (rollouts and Q_R).
    Assumption: on hard problems at temperature 1 many responses run to the limit."""
    teacher_output_fraction: float = 0.5
    """Mean teacher output length as a share of teacher.max_new_tokens. Assumption."""
    teacher_valid_rate: float = 0.8
    """Share of teacher samples that parse as a question/answer pair. Assumption (logged per step as
    teacher/valid_rate by a run)."""
    job_reset_s: float = 30.0
    """A student job's reset: a fresh model and DeepSpeed engine from the baseline. Assumption
    ("tens of seconds" for 3B in the GPU audit, from the code path)."""
    weight_sync_s: float = 1.0
    """Trainer -> vLLM weight sync per inner step (CUDA IPC on one GPU). Assumption."""
    sleep_wake_s: float = 3.0
    """vLLM sleep(1) + wake_up per inner step: the bf16 weights to the host and back (6 GiB for
    3B over PCIe) and the KV cache re-allocated. Assumption."""
    cpu_adam_params_per_s: float = 1e9
    """Host Adam updates per second per rank with Adam offload (DeepSpeedCPUAdam), when the ranks of
    a node share its cores. Assumption."""
    pcie_gb_per_s: float = 25.0
    """Effective host <-> GPU copy bandwidth (PCIe Gen5 x16 peaks at 64 GB/s per direction). Assumption."""


ASSUMED = PhaseAssumptions()


def decode_seconds(
    vllm: VllmShare, sequences: int, output_tokens: int, a: PhaseAssumptions = ASSUMED
) -> float:
    """Seconds for one engine to generate `output_tokens` for each of `sequences`."""
    if sequences <= 0:
        return 0.0
    shape, w = vllm.shape, vllm.dtype_bytes
    batch = max(1, min(sequences, vllm.concurrent_sequences))
    rounds = math.ceil(sequences / batch)
    context = PROMPT_TOKENS + output_tokens / 2
    kv_per_token = shape.kv_bytes_per_token(w) / min(vllm.tensor_parallel, shape.kv_heads)
    read = w * shape.params / vllm.tensor_parallel + batch * context * kv_per_token
    memory_s = read / (a.hbm_tb_per_s * 1e12 * a.decode_efficiency)
    compute_s = 2 * shape.params / vllm.tensor_parallel * batch / (a.peak_tflops * 1e12 * a.train_mfu)
    return rounds * output_tokens * max(memory_s, compute_s)


@dataclass(frozen=True)
class LoraProjection:
    """Students as LoRA adapters on one shared base per worker (student/lora_worker.py): one
    engine and one base per worker, its jobs' adapters in lockstep. Same throughput assumptions as
    full fine-tuning, changed only where LoRA changes the work; the RLVR baselines stay full
    fine-tuning. Every number is an assumption: none is measured on a GPU (the CPU benchmark in
    BENCHMARKS.md is the opposite regime, compute-bound tiny matmuls, and does not transfer)."""

    forward_backward_flops: int = 4
    """Per parameter and token: the forward (2) and the activation gradients (2); the frozen base
    gets no weight gradients (full fine-tuning: 6). "LoRA Without Regret" (Thinking Machines, 2025)
    puts LoRA at about two thirds of full fine-tuning's compute."""
    decode_overhead: float = 1.2
    """Decode time of a batch mixing adapters (vLLM's punica kernels on every projection) relative
    to the base model. Assumption."""
    reset_s: float = 1.0
    """A job's reset: a fresh adapter and its optimizer, no new DeepSpeed engine. Assumption."""
    sync_s: float = 0.2
    """Publishing one adapter to vLLM per inner step (a safetensors file and add_lora). Assumption."""


def train_seconds(
    shape: ModelShape,
    tokens: float,
    gpus: int,
    flags: dict,
    a: PhaseAssumptions = ASSUMED,
    forward_backward_flops: int = 6,
) -> float:
    """One optimizer step over `tokens` on `gpus` ranks, with the flags' checkpointing, reference
    and Adam offload."""
    per_token = (
        forward_backward_flops
        + 2
        + (2 if flags["actor.gradient_checkpointing_enable"] else 0)
        + (2 if flags["algo.kl.init_coef"] > 0 else 0)
    )
    seconds = per_token * shape.params * tokens / (gpus * a.peak_tflops * 1e12 * a.train_mfu)
    if flags["ds.adam_offload"]:
        partition = shape.params / gpus
        seconds += partition / a.cpu_adam_params_per_s + 2 * 2 * shape.params / (a.pcie_gb_per_s * 1e9)
    return seconds


@dataclass(frozen=True)
class StepTime:
    teacher_sampling_s: float
    student_wave_s: float
    waves: int
    jobs_per_worker: int  # jobs a worker runs at once (1: full fine-tuning; LoRA: in lockstep)
    teacher_update_s: float
    overlapped: bool

    @property
    def students_s(self) -> float:
        return self.waves * self.student_wave_s

    @property
    def step_s(self) -> float:
        if self.overlapped:
            return max(self.teacher_sampling_s, self.students_s) + self.teacher_update_s
        return self.teacher_sampling_s + self.students_s + self.teacher_update_s


def jobs_per_step(cfg: SoarConfig) -> int:
    """g*r inner jobs and one that scores the baseline on Q_R."""
    return cfg.meta.g * cfg.meta.r + 1


def waves(cfg: SoarConfig, jobs_per_worker: int = 1) -> int:
    """Rounds of an outer step's jobs over the student workers."""
    return math.ceil(jobs_per_step(cfg) / (cfg.pools.student_workers * jobs_per_worker))


def jobs_per_worker(cfg: SoarConfig, lora: LoraProjection | None) -> int:
    """Jobs a worker runs at once: 1 with full fine-tuning; with LoRA up to
    pools.students_per_worker, as many as the step's jobs spread over the workers need."""
    if lora is None:
        return 1
    return min(cfg.pools.students_per_worker, math.ceil(jobs_per_step(cfg) / cfg.pools.student_workers))


def student_wave_seconds(
    cfg: SoarConfig,
    student: ModelShape,
    vllm: VllmShare,
    inner_steps: int,
    jobs: int,
    a: PhaseAssumptions = ASSUMED,
    lora: LoraProjection | None = None,
) -> float:
    """One wave of a worker running `jobs` jobs at once (their rollouts in one engine's batch)."""
    s = cfg.student
    out = round(s.max_new_tokens * a.student_output_fraction)
    rollouts = s.batch_prompts * s.group_size
    flags = student_flags(cfg)
    if lora is None:
        decode_factor, reset_s, sync_s, fwd_bwd = 1.0, a.job_reset_s, a.weight_sync_s, 6
        if flags["vllm.enable_sleep"]:
            sync_s += a.sleep_wake_s
    else:
        decode_factor, reset_s, sync_s, fwd_bwd = (
            lora.decode_overhead,
            lora.reset_s,
            lora.sync_s,
            lora.forward_backward_flops,
        )
        # Adapter states are tiny (no offload), and LoraPolicies recomputes no layers.
        flags = flags | {"ds.adam_offload": False, "actor.gradient_checkpointing_enable": False}
    inner = decode_factor * decode_seconds(vllm, jobs * rollouts, out, a) + jobs * (
        train_seconds(student, rollouts * (PROMPT_TOKENS + out), 1, flags, a, fwd_bwd) + sync_s
    )
    return (
        reset_s + inner_steps * inner + decode_factor * decode_seconds(vllm, jobs * cfg.data.q_r_size, out, a)
    )


def step_time(
    cfg: SoarConfig,
    teacher: ModelShape,
    student: ModelShape,
    teacher_vllm: VllmShare,
    student_vllm: VllmShare,
    inner_steps: int,
    a: PhaseAssumptions = ASSUMED,
    lora: LoraProjection | None = None,
) -> StepTime:
    meta, t = cfg.meta, cfg.teacher
    samples = math.ceil(meta.g * meta.n / a.teacher_valid_rate)
    teacher_out = round(t.max_new_tokens * a.teacher_output_fraction)
    engines = cfg.pools.teacher_vllm_engines
    sampling = decode_seconds(teacher_vllm, math.ceil(samples / engines), teacher_out, a)
    jobs = jobs_per_worker(cfg, lora)
    wave = student_wave_seconds(cfg, student, student_vllm, inner_steps, jobs, a, lora)
    update = 0.0
    if meta.trains_teacher:
        update = (
            train_seconds(
                teacher,
                meta.g * meta.n * (PROMPT_TOKENS + teacher_out),
                cfg.pools.teacher_gpus,
                teacher_flags(cfg),
                a,
            )
            + a.weight_sync_s
        )
    # On one shared GPU the teacher's sampling would only compete with the students for it.
    overlapped = meta.async_ and not cfg.pools.share_gpu
    return StepTime(sampling, wave, waves(cfg, jobs), jobs, update, overlapped)


def rlvr_step_seconds(
    cfg: SoarConfig, student: ModelShape, vllm: VllmShare, a: PhaseAssumptions = ASSUMED
) -> float:
    """One RLVR step: batch_prompts x group_size rollouts over the engines, one optimizer step."""
    s, gpus = cfg.student, rlvr_gpus(cfg)
    engines = gpus // cfg.pools.gpus_per_student_worker
    out = round(s.max_new_tokens * a.student_output_fraction)
    rollouts = s.batch_prompts * s.group_size
    flags = student_flags(cfg)
    return (
        decode_seconds(vllm, math.ceil(rollouts / engines), out, a)
        + train_seconds(student, rollouts * (PROMPT_TOKENS + out), gpus, flags, a)
        + a.weight_sync_s
        + (a.sleep_wake_s if flags["vllm.enable_sleep"] else 0.0)
    )


@dataclass(frozen=True)
class RunCost:
    step: StepTime | None  # None for the RLVR-only modes
    step_after_promotion: StepTime | None  # with student.extra_steps_after_promotion
    soar_hours: float  # every outer step without a promotion before it
    soar_hours_promoted: float  # every outer step with the extra inner steps (promoted at once)
    rlvr_trainings: int
    rlvr_hours: float
    cluster_gpus: int

    @property
    def hours(self) -> tuple[float, float]:
        """Wall hours, (no promotion, promoted at once)."""
        return self.soar_hours + self.rlvr_hours, self.soar_hours_promoted + self.rlvr_hours

    @property
    def gpu_hours(self) -> tuple[float, float]:
        return self.hours[0] * self.cluster_gpus, self.hours[1] * self.cluster_gpus


def run_cost(
    cfg: SoarConfig,
    shapes: dict[str, ModelShape],
    memory: dict[str, GpuMemory],
    a: PhaseAssumptions = ASSUMED,
    lora: LoraProjection | None = None,
) -> RunCost:
    """`memory`: pools.plan_pools of the same recipe (its vLLM shares set the decode batches);
    `lora`: the LoRA assumptions (default for a recipe with LoRA students: LoraProjection())."""
    if lora is None and cfg.student.lora.enabled:
        lora = LoraProjection()
    # Every evaluation.after_run method trains a fresh RLVR student (soar_orl/methods.py).
    trainings = 1 if not cfg.meta.uses_teacher else len(cfg.evaluation.after_run)
    rlvr_hours = 0.0
    if trainings:
        step_s = rlvr_step_seconds(cfg, shapes["student"], memory["rlvr"].vllm, a)
        rlvr_hours = trainings * cfg.meta.rlvr_steps * step_s / 3600
    if not cfg.meta.uses_teacher:
        return RunCost(None, None, 0.0, 0.0, trainings, rlvr_hours, cfg.pools.cluster_gpus)
    steps = [
        step_time(
            cfg,
            shapes["teacher"],
            shapes["student"],
            memory["teacher"].vllm,
            memory["student"].vllm,
            inner,
            a,
            lora,
        )
        for inner in (
            cfg.student.inner_steps,
            cfg.student.inner_steps + cfg.student.extra_steps_after_promotion,
        )
    ]
    hours = [cfg.meta.outer_steps * step.step_s / 3600 for step in steps]
    return RunCost(steps[0], steps[1], hours[0], hours[1], trainings, rlvr_hours, cfg.pools.cluster_gpus)

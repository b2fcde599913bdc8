"""`soar plan RECIPE`: per pool and per GPU, the estimated memory of every process, whether the
recipe fits its declared `pools.gpu_memory_gb`, the options that would make it fit, and a
projected time per outer step and GPU-hours.

    bash run.sh plan recipes/math_grounded.yaml
    bash run.sh plan recipes/math_grounded.yaml student.adam_offload=true pools.gpu_memory_gb=141

The formulas are in plan/memory.py (memory) and plan/cost.py (time), the pool layouts in
plan/pools.py, the model architectures in plan/shapes.py. `soar run` calls `check_fits` before it
starts anything. Everything here is arithmetic on the recipe: no torch, Ray, vLLM or DeepSpeed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from soar_orl.config import ConfigError, SoarConfig, config_to_dict, validate_config
from soar_orl.plan.cost import ASSUMED, PAPER_GPU_HOURS, PhaseAssumptions, RunCost, jobs_per_step, run_cost
from soar_orl.plan.memory import GpuMemory
from soar_orl.plan.pools import plan_pools, rlvr_gpus, student_flags, teacher_flags
from soar_orl.plan.shapes import ModelShape, UnknownModelShape, model_shape

BIGGER_CARD_GIB = 141.0  # H200
LORA_NOTE = "LoRA students: student.lora.rank=8 pools.students_per_worker=S (one base per worker)"
LORA_VARIANT_RANK = 8
"""Rank of the LoRA variant plan projects for a full fine-tuning recipe ("LoRA Without Regret"
finds RL insensitive to the rank down to 1; 8 is the rank of the CPU benchmark)."""



class RecipeDoesNotFit(ConfigError):
    """A recipe whose estimated memory exceeds its declared GPUs; the message lists the options."""


@dataclass
class RecipePlan:
    cfg: SoarConfig
    shapes: dict[str, ModelShape]
    pools: dict[str, GpuMemory]
    cost: RunCost
    lora_cost: RunCost | None  # a full fine-tuning SOAR recipe's cheapest LoRA variant that fits
    lora_changes: dict[str, Any] | None = None  # the overrides that make that variant
    lora_error: str | None = None  # why no variant is projected (each tried layout's reason)

    @property
    def fits(self) -> bool:
        return all(pool.fits for pool in self.pools.values())

    def problems(self) -> list[str]:
        return [problem for pool in self.pools.values() for problem in pool.problems()]


def plan_recipe(
    cfg: SoarConfig, shapes: dict[str, ModelShape], assumptions: PhaseAssumptions = ASSUMED
) -> RecipePlan:
    pools = plan_pools(cfg, shapes)
    plan = RecipePlan(cfg, shapes, pools, run_cost(cfg, shapes, pools, assumptions), None)
    if not cfg.meta.uses_teacher or cfg.student.lora.enabled:
        return plan
    reasons = []
    for changes in lora_variants(cfg):
        try:
            variant = apply_changes(cfg, changes)
            changes |= fitting_changes(variant, shapes) or {}
            variant = apply_changes(cfg, changes)
        except ConfigError as err:  # e.g. the RLVR batch does not split over the smaller cluster
            reasons.append(f"{format_changes(cfg, changes)}: {str(err).splitlines()[-1].strip(' -')}")
            continue
        variant_pools = plan_pools(variant, shapes)
        if not all(pool.fits for pool in variant_pools.values()):
            reasons.append(f"{format_changes(cfg, changes)}: does not fit")
            continue
        cost = run_cost(variant, shapes, variant_pools, assumptions)
        if plan.lora_cost is None or cost.gpu_hours[0] < plan.lora_cost.gpu_hours[0]:
            plan.lora_cost, plan.lora_changes = cost, changes
    if plan.lora_cost is None:
        plan.lora_error = "; ".join(reasons)
    return plan


def lora_variants(cfg: SoarConfig) -> list[dict[str, Any]]:
    """The LoRA layouts plan tries for a full fine-tuning SOAR recipe, as overrides: rank
    LORA_VARIANT_RANK, S jobs per worker for every S that needs a different number of workers
    (ceil(jobs / S)), the teacher pool as it is, the cluster cut to the nodes these need (the RLVR
    baselines then train on at most that cluster)."""
    pools, jobs, variants, seen = cfg.pools, jobs_per_step(cfg), [], set()
    for spw in range(1, jobs + 1):
        workers = math.ceil(jobs / spw)
        if workers in seen:
            continue
        seen.add(workers)
        nodes = math.ceil((pools.teacher_gpus + workers) / pools.gpus_per_node)
        changes: dict[str, Any] = {
            "student.lora.rank": LORA_VARIANT_RANK,
            "pools.students_per_worker": spw,
            "pools.student_gpus": workers,
            "pools.num_nodes": nodes,
        }
        if rlvr_gpus(cfg) > nodes * pools.gpus_per_node:
            changes["pools.rlvr_gpus"] = nodes * pools.gpus_per_node
        variants.append(changes)
    return variants


def recipe_shapes(cfg: SoarConfig) -> dict[str, ModelShape]:
    """The architectures of the recipe's teacher and student (table, or the local folder; a
    builtin world model is resolved, i.e. copied from artifacts/ into the cache)."""

    def shape(name: str) -> ModelShape:
        try:
            return model_shape(name)
        except UnknownModelShape:
            if not name.startswith("builtin:"):
                raise
        from soar_orl.resolve import resolve_model

        return model_shape(name, resolve_model(name))

    return {"teacher": shape(cfg.model.teacher), "student": shape(cfg.model.student)}


# ----------------------------------------------------------------------------- options that fit


def apply_changes(cfg: SoarConfig, changes: dict[str, Any]) -> SoarConfig:
    """`cfg` with dotted keys set; `X.openrlhf_args.FLAG` sets one flag of that passthrough."""
    raw = config_to_dict(cfg)
    for key, value in changes.items():
        section, _, rest = key.partition(".")
        if rest.startswith("openrlhf_args."):
            raw[section]["openrlhf_args"][rest.removeprefix("openrlhf_args.")] = value
            continue
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return validate_config(raw, source="plan option")


def format_changes(cfg: SoarConfig, changes: dict[str, Any]) -> str:
    """Command-line overrides; passthrough flags are merged into one `X.openrlhf_args={...}`."""
    words, passthrough = [], {}
    for key, value in changes.items():
        section, _, rest = key.partition(".")
        if rest.startswith("openrlhf_args."):
            passthrough.setdefault(section, dict(getattr(cfg, section).openrlhf_args))[
                rest.removeprefix("openrlhf_args.")
            ] = value
        else:
            words.append(f"{key}={_yaml(value)}")
    for section, flags in passthrough.items():
        inner = ", ".join(f"{k}: {_yaml(v)}" for k, v in flags.items())
        words.append(f"'{section}.openrlhf_args={{{inner}}}'")
    return " ".join(words)


def _count(params: int) -> str:
    return f"{params / 1e9:.2f}B" if params >= 1e9 else f"{params / 1e6:.1f}M"


def _gib(value: float) -> str:
    return f"{value:.1f}" if value >= 0.1 else f"{value:.3f}"


def _yaml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Option:
    label: str
    changes: dict[str, Any]


_SWITCHES = {  # role -> (label, the OpenRLHF flag it sets, the recipe key that sets it)
    "teacher": [
        (
            "gradient checkpointing",
            "actor.gradient_checkpointing_enable",
            "teacher.openrlhf_args.actor.gradient_checkpointing_enable",
        ),
        ("Adam offload", "ds.adam_offload", "teacher.openrlhf_args.ds.adam_offload"),
    ],
    "student": [
        ("gradient checkpointing", "actor.gradient_checkpointing_enable", "student.gradient_checkpointing"),
        ("vLLM sleep while training", "vllm.enable_sleep", "student.vllm_sleep"),
        ("Adam offload", "ds.adam_offload", "student.adam_offload"),
    ],
}
_SWITCHES["rlvr"] = _SWITCHES["student"]  # RLVR trains with the student's settings


def pool_options(cfg: SoarConfig, role: str) -> tuple[list[Option], list[Option]]:
    """(switches not yet on, smaller micro batches) that lower the memory of a pool's GPUs."""
    if role == "shared":  # the one GPU of pools.share_gpu: either pool's options lower its peak
        teacher, student = pool_options(cfg, "teacher"), pool_options(cfg, "student")
        return teacher[0] + student[0], teacher[1] + student[1]
    flags = teacher_flags(cfg) if role == "teacher" else student_flags(cfg)
    if role == "student" and cfg.student.lora.enabled:  # no DeepSpeed switches apply; fewer slots do
        spw = cfg.pools.students_per_worker
        switches = [Option(f"{spw // 2} LoRA students per worker (more waves)",
                           {"pools.students_per_worker": spw // 2})] if spw > 1 else []
    else:
        switches = [Option(label, {key: True}) for label, flag, key in _SWITCHES[role] if not flags[flag]]
    if role == "teacher":
        micro, rows, key = (
            cfg.teacher.train_micro_batch_size,
            cfg.meta.g * cfg.meta.n,
            "teacher.train_micro_batch_size",
        )
    else:
        student = cfg.student
        micro, rows = student.train_micro_batch_size, student.batch_prompts * student.group_size
        key = "student.train_micro_batch_size"
    smaller = [m for m in (micro // 2**i for i in range(1, 8)) if m >= 1 and rows % m == 0]
    return switches, [Option(f"micro batch {m}", {key: m}) for m in dict.fromkeys(smaller)]


def _fits(cfg: SoarConfig, shapes: dict[str, ModelShape], role: str) -> bool:
    pool = plan_pools(cfg, shapes).get(role)
    return pool is not None and pool.fits


def smallest_fix(cfg: SoarConfig, shapes: dict[str, ModelShape], role: str) -> dict[str, Any] | None:
    """The fewest switches and micro-batch change that make pool `role` fit (a larger micro
    batch preferred), or None when none does."""
    switches, micros = pool_options(cfg, role)
    candidates = []  # (changes, halvings of the micro batch)
    for count in range(len(switches) + 1):
        for chosen in itertools.combinations(switches, count):
            for halvings, micro in enumerate([None, *micros]):
                changes = {k: v for option in chosen for k, v in option.changes.items()}
                if micro is not None:
                    changes |= micro.changes
                candidates.append((changes, halvings))
    # Fewest changes first, then the largest micro batch; ties keep the switches' order (cheapest first).
    candidates.sort(key=lambda candidate: (len(candidate[0]), candidate[1]))
    for changes, _ in candidates:
        try:
            if _fits(apply_changes(cfg, changes), shapes, role):
                return changes
        except ConfigError:
            continue
    return None


def single_option_peaks(
    cfg: SoarConfig, shapes: dict[str, ModelShape], role: str
) -> list[tuple[str, str, float, bool]]:
    """(label, override, peak GiB, fits) of each option alone, and of more GPUs / a bigger card."""
    switches, micros = pool_options(cfg, role)
    smallest_micro = {key: option for option in micros for key in option.changes}  # per trainer
    options = switches + list(smallest_micro.values())
    if role == "teacher":
        pools = cfg.pools
        options.append(
            Option(
                f"teacher on {2 * pools.teacher_gpus} GPUs (ZeRO partitions the optimizer)",
                {
                    "pools.teacher_gpus": 2 * pools.teacher_gpus,
                    "pools.teacher_vllm_engines": 2 * pools.teacher_vllm_engines,
                },
            )
        )
    if role == "rlvr" and 2 * rlvr_gpus(cfg) <= cfg.pools.cluster_gpus:
        options.append(Option(f"RLVR on {2 * rlvr_gpus(cfg)} GPUs", {"pools.rlvr_gpus": 2 * rlvr_gpus(cfg)}))
    if cfg.pools.gpu_memory_gb < BIGGER_CARD_GIB:
        options.append(
            Option(f"{BIGGER_CARD_GIB:g} GiB cards (H200)", {"pools.gpu_memory_gb": BIGGER_CARD_GIB})
        )
    rows = []
    for option in options:
        try:
            pool = plan_pools(apply_changes(cfg, option.changes), shapes)[role]
        except ConfigError:
            continue  # e.g. more GPUs than the cluster has
        rows.append((option.label, format_changes(cfg, option.changes), pool.peak, pool.fits))
    return rows


def fitting_changes(cfg: SoarConfig, shapes: dict[str, ModelShape]) -> dict[str, Any] | None:
    """One set of overrides under which every pool fits (pool by pool, each on top of the last),
    or None."""
    changes: dict[str, Any] = {}
    for role in plan_pools(cfg, shapes):
        current = apply_changes(cfg, changes)
        if plan_pools(current, shapes)[role].fits:
            continue
        fix = smallest_fix(current, shapes, role)
        if fix is None:
            return None
        changes |= fix
    return changes


# ----------------------------------------------------------------------------- output


def render(plan: RecipePlan, source: str) -> str:
    cfg, lines = plan.cfg, []
    pools = cfg.pools
    lines.append(
        f"plan of {source}: {pools.num_nodes} node(s) x {pools.gpus_per_node} GPUs of "
        f"pools.gpu_memory_gb = {pools.gpu_memory_gb:g} GiB, {cfg.model.dtype}"
    )
    for role, shape in plan.shapes.items():
        name = getattr(cfg.model, role)
        lines.append(
            f"  {role}: {name} ({_count(shape.params)} parameters, {shape.layers} layers, hidden "
            f"{shape.hidden}, vocab {shape.vocab})"
        )
    for pool in plan.pools.values():
        lines += ["", f"{pool.pool}: {pool.layout}", f"  {'process':<17} {'component':<68} {'GiB':>6}  held"]
        for item in pool.items:
            held = "always" if len(item.phases) == 2 else item.phases[0]
            lines.append(f"  {item.process:<17} {item.component:<68} {_gib(item.gib):>6}  {held}")
        totals = ", ".join(f"{phase} {pool.total(phase):.1f}" for phase in ("generate", "train"))
        verdict = "fits" if pool.fits else "DOES NOT FIT"
        lines.append(f"  per GPU: {totals} GiB; peak {pool.peak:.1f} of {pool.card_gib:g} GiB: {verdict}")
        if pool.vllm is not None:
            v = pool.vllm
            adapters = f" + LoRA slots {_gib(v.lora_gib)}" if v.lora_gib else ""
            lines.append(
                f"  vLLM share {v.share_gib:.1f} GiB = weights {v.weights_gib:.1f}{adapters} + runtime "
                f"{v.share_gib - v.weights_gib - v.lora_gib - v.kv_gib:.1f} + KV {v.kv_gib:.1f} GiB: {v.kv_tokens:,} tokens, "
                f"{v.concurrent_sequences} sequences of {v.sequence_tokens} at once"
            )
        if pool.host_gib_per_gpu:
            lines.append(
                f"  host memory for Adam offload: {pool.host_gib_per_gpu:.0f} GiB per GPU, "
                f"{pool.host_gib_per_gpu * min(pool.gpus, pools.gpus_per_node):.0f} GiB per node"
            )
        lines += [f"  note: {note}" for note in pool.notes]
    lines += ["", *_render_cost(plan)]
    if plan.fits:
        lines += ["", "fits: every GPU's estimated peak is within pools.gpu_memory_gb"]
    else:
        lines += ["", *_render_refusal(plan)]
    return "\n".join(lines)


def _render_cost(plan: RecipePlan) -> list[str]:
    cfg, cost, a = plan.cfg, plan.cost, ASSUMED
    lines = [f"time (projection for {a.gpu}, from the assumptions in soar_orl/plan/cost.py; not measured):"]
    if cost.step is not None:
        step, meta = cost.step, cfg.meta
        jobs = meta.g * meta.r + 1
        lines += [
            (
                f"  waves per outer step: {jobs} jobs (g*r = {meta.g * meta.r} + the baseline) over "
                f"{cfg.pools.student_workers} student workers = {step.waves}"
            ),
            (
                f"  teacher sampling {step.teacher_sampling_s:.0f} s, student job {step.student_wave_s:.0f} s x "
                f"{step.waves} wave(s) = {step.students_s:.0f} s, teacher update {step.teacher_update_s:.0f} s"
            ),
            (
                f"  outer step {step.step_s:.0f} s ({_order(cfg, step.overlapped)}), "
                f"{cost.step_after_promotion.step_s:.0f} s with the {cfg.student.extra_steps_after_promotion} extra inner "
                f"steps after a promotion; {meta.outer_steps} outer steps: {cost.soar_hours:.1f}-{cost.soar_hours_promoted:.1f} h"
            ),
        ]
    if cost.rlvr_trainings:
        lines.append(
            f"  RLVR: {cost.rlvr_trainings} training(s) of {cfg.meta.rlvr_steps} steps on {rlvr_gpus(cfg)} GPUs: "
            f"{cost.rlvr_hours:.1f} h (their evaluation not counted)"
        )
    paper = (
        f" (paper, one SOAR run on 32 GPUs: {PAPER_GPU_HOURS[0]:,}-{PAPER_GPU_HOURS[1]:,})"
        if _compares_with_paper(cfg)
        else ""
    )
    lines.append(f"  total {_hours(cost)}{paper}{_paper_share(cfg, cost)}")
    if plan.lora_cost is not None:
        lora = plan.lora_cost
        lines += [
            (
                "  with LoRA students instead (same assumptions plus cost.LoraProjection; of the layouts "
                f"tried, the fewest GPU-hours that fits: {format_changes(cfg, plan.lora_changes)}):"
            ),
            (
                f"    {lora.step.jobs_per_worker} job(s) per worker at once, {lora.step.waves} wave(s), outer step "
                f"{lora.step.step_s:.0f} s; total {_hours(lora)}{_paper_share(cfg, lora)}"
            ),
        ]
    elif plan.lora_error:
        lines.append(f"  no LoRA variant projected (none of the layouts tried is valid and fits): {plan.lora_error}")
    elif cfg.student.lora.enabled and cost.step is not None:
        lines.append(
            f"  LoRA students: {cost.step.jobs_per_worker} job(s) per worker at once (cost.LoraProjection)"
        )
    return lines


def _order(cfg: SoarConfig, overlapped: bool) -> str:
    if overlapped:
        return "sampling overlaps the students: meta.async"
    if cfg.meta.async_ and cfg.pools.share_gpu:
        return "strict order: meta.async gains nothing on one GPU shared by both pools"
    return "strict order"


def _compares_with_paper(cfg: SoarConfig) -> bool:
    """The paper's GPU-hours are those of a SOAR run on MATH."""
    return cfg.meta.uses_teacher and cfg.data.task == "math"


def _paper_share(cfg: SoarConfig, cost: RunCost) -> str:
    if not _compares_with_paper(cfg):
        return ""
    low, high = cost.gpu_hours[0] / PAPER_GPU_HOURS[0], cost.gpu_hours[1] / PAPER_GPU_HOURS[1]
    return f", {low:.2f}-{high:.2f} of the paper's GPU-hours"


def _hours(cost: RunCost) -> str:
    (low, high), (gpu_low, gpu_high) = cost.hours, cost.gpu_hours
    if round(low, 1) == round(high, 1):
        return f"{low:.1f} h on {cost.cluster_gpus} GPUs: {gpu_low:,.0f} GPU-hours"
    return f"{low:.1f}-{high:.1f} h on {cost.cluster_gpus} GPUs: {gpu_low:,.0f}-{gpu_high:,.0f} GPU-hours"


def _render_refusal(plan: RecipePlan) -> list[str]:
    cfg, lines = plan.cfg, ["REFUSED: the recipe does not fit its declared GPUs"]
    lines += [f"  - {problem}" for problem in plan.problems()]
    for role, pool in plan.pools.items():
        if pool.fits:
            continue
        lines.append(f"  options for the {pool.pool} (peak with each alone):")
        for label, override, peak, fits in single_option_peaks(cfg, plan.shapes, role):
            lines.append(f"    {label:<58} {peak:>6.1f} GiB {'fits' if fits else '    '}  {override}")
        if role == "student" and not cfg.student.lora.enabled:
            lines.append(
                "    more GPUs: no help per GPU (each student is one DeepSpeed rank); they add workers"
            )
        if role == "student" and not cfg.student.lora.enabled:
            lines.append(f"    {LORA_NOTE}")
    changes = fitting_changes(cfg, plan.shapes)
    if changes:
        lines.append(f"  fits with: {format_changes(cfg, changes)}")
    else:
        lines.append(
            "  no combination of these switches and micro batches fits: use more GPUs per pool, a bigger "
            "card, or a smaller model"
        )
    return lines


def check_fits(cfg: SoarConfig, backend: str) -> str:
    """For `soar run`: raise RecipeDoesNotFit when the recipe cannot fit its GPUs; otherwise a
    one-line summary. Skipped on backend cpu (virtual GPUs, see pools.gpu_memory_gb)."""
    if backend == "cpu":
        return "memory check skipped: backend cpu (the declared GPUs are virtual)"
    try:
        shapes = recipe_shapes(cfg)
    except UnknownModelShape as err:
        return f"memory check skipped: {err}"
    plan = plan_recipe(cfg, shapes)
    if not plan.fits:
        raise RecipeDoesNotFit("\n".join(_render_refusal(plan)) + "\n(details: bash run.sh plan RECIPE ...)")
    peaks = ", ".join(f"{pool.pool} {pool.peak:.0f}" for pool in plan.pools.values())
    return f"memory check: peak GiB per GPU {peaks} of {cfg.pools.gpu_memory_gb:g}"

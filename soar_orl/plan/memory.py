"""GPU memory of the processes of a run, from the model's shape and the recipe's settings.

Pure arithmetic (no torch, DeepSpeed or vLLM). Units are GiB (2^30 bytes); P is the parameter
count, w the bytes of the model dtype (bf16: 2, fp32: 4), N the DeepSpeed world size.

Model states of a DeepSpeed ZeRO rank (bytes per parameter):

| component | held | bf16 (mixed precision) | fp32 |
|---|---|---|---|
| weights | always | w (/N at ZeRO-3) | w |
| gradients in the model dtype | training | w (/N at ZeRO-3) | w |
| optimizer: fp32 master + Adam m, v | always | 12/N (ZeRO >= 1) | 8/N |
| fp32 gradient partition | training | 4/N (ZeRO >= 1) | 0 (the gradients are fp32) |

Summed, bf16 at ZeRO-2 is 4 + 16/N bytes per parameter: DeepSpeed's own
`estimate_zero2_model_states_mem_needs` (deepspeed 0.19.6, runtime/zero/stage_1_and_2.py:
`gpu_mem = 4 * total_params + int(16 * total_params / total_gpus)`); the ZeRO paper (Rajbhandari
et al. 2020, Sec. 3.1) counts 2 + 2 + 12 = 16 bytes, without the fp32 gradient copy DeepSpeed's
bf16 optimizer keeps. For Llama-3.2-3B at world size 1 (a student worker) that is 20 x 3.21e9 B
= 59.8 GiB before any activation (tests/unit/test_plan.py checks both figures). With Adam offload
(`ds.adam_offload`) the optimizer, the fp32 gradients and the gradient partitions live on the
host: DeepSpeed's estimate is then 2 bytes per parameter on the GPU (the weights), and
16 x 1.5 bytes per parameter of host memory per rank (`additional_buffer_factor` 1.5).

Activations kept for the backward pass of one micro batch of B sequences of T tokens, by the
term-by-term count of Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models", Sec. 4.1: 34sbh + 5as^2b bytes per GPT layer) applied to a Hugging Face
Llama/Qwen2 layer with fused attention (flash-attn / SDPA: no s x s scores kept, hence no 5as^2b
term) and no dropout (hence none of their 2sbh of dropout masks), per token:
  - each of the two RMSNorms keeps an fp32 copy of its input and its normalised output:
    (4 + w) h (a fused LayerNorm keeps w h);
  - the q/k/v projection input w h, q w h, k and v 2 w k_d, the attention output w h, the MLP
    input w h;
  - the SwiGLU MLP: gate output, SiLU output, up output, their product: 4 w I;
  per layer: 2 (4 + w) h + w (4 h + 2 k_d + 4 I) bytes (k_d = kv heads x head dim). For a GPT
  layer's shapes (k_d = h, a GeLU MLP of 2 tensors of 4h, fused LayerNorm) the same count is
  32 s b h, Korthikanti's 34 s b h less the dropout masks. Llama-3.2-3B in bf16:
  20 h + 4 k_d + 8 I = 131,072 bytes per token per layer, 3.4 GiB per 1k tokens over 28 layers.
With gradient checkpointing (`gradient_checkpointing_enable`, one checkpoint per decoder layer)
the layers keep only their input (w h each) and one layer is live again during its backward.
The head: the final norm (4 + w) h and the logits: OpenRLHF's Actor casts them to fp32
(models/actor.py `.to(torch.float32)`), and the log-softmax keeps that fp32 copy for its backward,
whose fp32 gradient then sits next to it, so bf16 models hold (2 + 4 + 4) V bytes per token and
fp32 models 8 V. With a vocabulary of 128k the logits outweigh the checkpointed layers.

vLLM pre-allocates `gpu_memory_utilization` x the card (vLLM v1's request is a share of the
total, checked against free memory at start); inside it sit the weights (/ tensor parallel size),
a runtime part (`VLLM_RUNTIME_GIB`) and the KV cache, which must hold at least one sequence of
max_model_len tokens or vLLM refuses to start. Level-1 sleep (`sleep(1)`) frees weights and KV,
leaving `VLLM_ASLEEP_GIB`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from soar_orl.plan.shapes import ModelShape

GIB = 2**30
PHASES = ("generate", "train")
"""A GPU's processes peak at different times: vLLM generates (rollouts, Q_R evaluation, teacher
samples), or the trainer runs its backward pass and optimizer step."""

PROCESS_OVERHEAD_GIB = 1.0
"""Per training process besides its tensors: the CUDA context (about 0.5 GiB for torch 2.x on
Hopper), NCCL buffers, DeepSpeed's reduce buckets and allocator fragmentation. An assumption."""
VLLM_RUNTIME_GIB = 2.0
"""Inside vLLM's share, besides weights and KV cache: its profiled activation peak
(max_num_batched_tokens), CUDA graphs, the sampler and its CUDA context. vLLM logs each at start
("Model loading took", "CUDA graph pool", "Available KV cache memory"); an assumption until a GPU
run measures it."""
VLLM_ASLEEP_GIB = 0.5
"""What a vLLM engine keeps after `sleep(level=1)` (weights offloaded to the host, KV cache freed):
its CUDA context. An assumption."""
OFFLOAD_HOST_BUFFER = 1.5
"""DeepSpeed's `additional_buffer_factor` for host memory in its ZeRO-2 offload estimate."""


@dataclass(frozen=True)
class Item:
    """One component of one process on a GPU."""

    process: str
    component: str
    gib: float
    phases: tuple[str, ...] = PHASES


@dataclass(frozen=True)
class TrainerSetup:
    """One DeepSpeed training rank (OpenRLHF Actor)."""

    shape: ModelShape
    dtype_bytes: int
    zero_stage: int
    world: int
    micro_batch: int
    seq_len: int
    gradient_checkpointing: bool = False
    adam_offload: bool = False
    states_offload_while_generating: bool = False
    """OpenRLHF's `ds.enable_sleep`: weights and optimizer move to the host while vLLM generates."""


def model_states(setup: TrainerSetup) -> dict[str, tuple[float, tuple[str, ...]]]:
    """component -> (bytes on the GPU, phases held), as in the module docstring's table."""
    params, w, world = setup.shape.params, setup.dtype_bytes, setup.world
    partitions = world if setup.zero_stage >= 1 else 1
    sharded = world if setup.zero_stage >= 3 else 1
    mixed = w != 4
    always = ("train",) if setup.states_offload_while_generating else PHASES
    states = {
        "weights": (w * params / sharded, always),
        "gradients": (0.0 if setup.adam_offload else w * params / sharded, ("train",)),
        "optimizer": (0.0 if setup.adam_offload else (12 if mixed else 8) * params / partitions, always),
        "fp32 gradients": (0.0 if setup.adam_offload or not mixed else 4 * params / partitions, ("train",)),
    }
    return {name: value for name, value in states.items() if value[0] > 0}


def host_offload_bytes(setup: TrainerSetup) -> float:
    """Host memory of one rank with Adam offload (DeepSpeed's estimate: 16 bytes per parameter
    of its partition, times its buffer factor)."""
    if not setup.adam_offload:
        return 0.0
    partitions = setup.world if setup.zero_stage >= 1 else 1
    return 16 * setup.shape.params / partitions * OFFLOAD_HOST_BUFFER


def layer_activation_bytes_per_token(shape: ModelShape, w: int) -> int:
    """Bytes one decoder layer keeps per token for its backward (module docstring)."""
    return 2 * (4 + w) * shape.hidden + w * (4 * shape.hidden + 2 * shape.kv_width + 4 * shape.intermediate)


def head_activation_bytes_per_token(shape: ModelShape, w: int) -> int:
    """The final norm and the logits: bf16 logits, their fp32 copy and its fp32 gradient."""
    logits = (4 + 4 + (w if w != 4 else 0)) * shape.vocab
    return (4 + w) * shape.hidden + logits


def activation_bytes(setup: TrainerSetup) -> float:
    shape, w = setup.shape, setup.dtype_bytes
    layer = layer_activation_bytes_per_token(shape, w)
    layers = shape.layers * w * shape.hidden + layer if setup.gradient_checkpointing else shape.layers * layer
    return setup.micro_batch * setup.seq_len * (layers + head_activation_bytes_per_token(shape, w))


def trainer_items(process: str, setup: TrainerSetup) -> list[Item]:
    zero = f"ZeRO-{setup.zero_stage} over {setup.world}"
    items = [
        Item(process, f"{name} ({zero})", size / GIB, phases)
        for name, (size, phases) in model_states(setup).items()
    ]
    checkpointing = "gradient checkpointing" if setup.gradient_checkpointing else "no checkpointing"
    items.append(
        Item(
            process,
            f"activations (micro batch {setup.micro_batch} x {setup.seq_len} tokens, {checkpointing})",
            activation_bytes(setup) / GIB,
            ("train",),
        )
    )
    items.append(Item(process, "CUDA context, buffers", PROCESS_OVERHEAD_GIB))
    return items


def reference_items(process: str, shape: ModelShape, w: int, offload: bool, shards: int = 1) -> list[Item]:
    """A frozen KL reference: weights only (its no-grad forward runs micro batch by micro batch,
    below the training peak). OpenRLHF's reference is ZeRO-3 (`shards` ranks) only when the actor
    is, else replicated."""
    if offload:
        return [Item(process, "CUDA context (weights offloaded to the host)", PROCESS_OVERHEAD_GIB)]
    return [
        Item(
            process,
            "weights" + (f" (ZeRO-3 over {shards})" if shards > 1 else ""),
            w * shape.params / shards / GIB,
        ),
        Item(process, "CUDA context, buffers", PROCESS_OVERHEAD_GIB),
    ]


@dataclass(frozen=True)
class VllmShare:
    """One vLLM engine shard on a GPU and what its pre-allocated share holds."""

    shape: ModelShape
    dtype_bytes: int
    share_gib: float
    tensor_parallel: int
    max_model_len: int
    sequence_tokens: int  # prompt + generated tokens of the sequences it serves
    lora_gib: float = 0.0
    """LoRA engines (`enable_lora`): the adapter slots vLLM allocates at load, max_loras adapters
    at max_lora_rank in the model dtype, taken from the share before the KV cache."""

    @property
    def weights_gib(self) -> float:
        return self.dtype_bytes * self.shape.params / self.tensor_parallel / GIB

    @property
    def kv_gib(self) -> float:
        return self.share_gib - self.weights_gib - self.lora_gib - VLLM_RUNTIME_GIB

    @property
    def kv_tokens(self) -> int:
        per_token = self.shape.kv_bytes_per_token(self.dtype_bytes) / min(
            self.tensor_parallel, self.shape.kv_heads
        )
        return max(0, int(self.kv_gib * GIB / per_token))

    @property
    def concurrent_sequences(self) -> int:
        return self.kv_tokens // self.sequence_tokens

    @property
    def starts(self) -> bool:
        """vLLM refuses to start when its KV cache cannot hold one max_model_len sequence."""
        return self.kv_tokens >= self.max_model_len

    def items(self, process: str, sleeps_while_training: bool) -> list[Item]:
        label = f"pre-allocated share ({self.share_gib:.1f} GiB)"
        if not sleeps_while_training:
            return [Item(process, label, self.share_gib)]
        return [
            Item(process, label, self.share_gib, ("generate",)),
            Item(process, "asleep while training (level 1)", VLLM_ASLEEP_GIB, ("train",)),
        ]


@dataclass
class GpuMemory:
    """The processes of one GPU of a pool (every GPU of the pool looks like this one)."""

    pool: str
    layout: str  # what runs on it, in words
    gpus: int
    card_gib: float
    items: list[Item]
    vllm: VllmShare | None = None
    host_gib_per_gpu: float = 0.0  # host memory its Adam offload needs
    notes: list[str] = field(default_factory=list)

    def total(self, phase: str) -> float:
        return sum(item.gib for item in self.items if phase in item.phases)

    @property
    def peak_phase(self) -> str:
        return max(PHASES, key=self.total)

    @property
    def peak(self) -> float:
        return self.total(self.peak_phase)

    @property
    def fits(self) -> bool:
        return self.peak <= self.card_gib and (self.vllm is None or self.vllm.starts)

    def problems(self) -> list[str]:
        found = []
        if self.peak > self.card_gib:
            found.append(
                f"{self.pool}: peak {self.peak:.1f} GiB ({self.peak_phase}) exceeds pools.gpu_memory_gb "
                f"= {self.card_gib:g} GiB per GPU"
            )
        if self.vllm is not None and not self.vllm.starts:
            found.append(
                f"{self.pool}: vLLM's share of {self.vllm.share_gib:.1f} GiB (pools.vllm_gpu_memory_utilization"
                f" x the card) leaves {self.vllm.kv_gib:.1f} GiB of KV cache after weights "
                f"{self.vllm.weights_gib:.1f} + runtime {VLLM_RUNTIME_GIB:g} GiB: not one sequence of "
                f"max_model_len {self.vllm.max_model_len} tokens, so vLLM refuses to start"
            )
        return found

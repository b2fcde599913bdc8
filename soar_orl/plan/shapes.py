"""Model architectures the memory plan needs, without downloading or loading a model.

A local Hugging Face folder gives its `config.json`; hub names that cannot be fetched here (and
the builtin models) come from `KNOWN_SHAPES`, copied by hand from the `config.json` of each
repository on the Hugging Face hub (2026-12). `ModelShape.params` is checked against the
parameter counts of the model cards in tests/unit/test_plan.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer of the Llama family (RMSNorm, rotary, GQA, SwiGLU MLP)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    head_dim: int | None = None  # None: hidden // heads
    attention_bias: bool = False  # Qwen2 has q/k/v biases

    @property
    def dim(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def kv_width(self) -> int:
        """Width of K (and of V): kv_heads x head_dim."""
        return self.kv_heads * self.dim

    @property
    def params(self) -> int:
        h, q_width = self.hidden, self.heads * self.dim
        attention = h * q_width + 2 * h * self.kv_width + q_width * h
        if self.attention_bias:
            attention += q_width + 2 * self.kv_width
        layer = attention + 3 * h * self.intermediate + 2 * h  # + two RMSNorm weights
        embeddings = self.vocab * h * (1 if self.tied_embeddings else 2)
        return embeddings + self.layers * layer + h  # + the final norm

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each projection of a decoder layer, by Hugging Face module name."""
        h, q_width, kv, i = self.hidden, self.heads * self.dim, self.kv_width, self.intermediate
        return {
            "q_proj": (h, q_width), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q_width, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }

    def lora_params(self, rank: int, target_modules: list[str]) -> int:
        """Parameters of one LoRA adapter: A (rank x in) and B (out x rank) per adapted projection."""
        dims = self.linear_dims()
        return self.layers * sum(rank * sum(dims[name]) for name in target_modules if name in dims)

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """vLLM's KV cache per token: K and V of every layer."""
        return 2 * self.layers * self.kv_width * dtype_bytes


def shape_from_hf_config(config: dict) -> ModelShape:
    """A `config.json` of a Llama/Qwen2/SmolLM-style model."""
    return ModelShape(
        hidden=config["hidden_size"],
        layers=config["num_hidden_layers"],
        heads=config["num_attention_heads"],
        kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
        intermediate=config["intermediate_size"],
        vocab=config["vocab_size"],
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        head_dim=config.get("head_dim"),
        attention_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")),
    )


_LLAMA_3_VOCAB, _QWEN_2_5_VOCAB = 128256, 151936
KNOWN_SHAPES: dict[str, ModelShape] = {
    "meta-llama/Llama-3.2-1B-Instruct": ModelShape(2048, 16, 32, 8, 8192, _LLAMA_3_VOCAB, True, head_dim=64),
    "meta-llama/Llama-3.2-3B-Instruct": ModelShape(3072, 28, 24, 8, 8192, _LLAMA_3_VOCAB, True, head_dim=128),
    "meta-llama/Llama-3.1-8B-Instruct": ModelShape(4096, 32, 32, 8, 14336, _LLAMA_3_VOCAB, False),
    "Qwen/Qwen2.5-0.5B-Instruct": ModelShape(
        896, 24, 14, 2, 4864, _QWEN_2_5_VOCAB, True, attention_bias=True
    ),
    "Qwen/Qwen2.5-1.5B-Instruct": ModelShape(
        1536, 28, 12, 2, 8960, _QWEN_2_5_VOCAB, True, attention_bias=True
    ),
    "Qwen/Qwen2.5-3B-Instruct": ModelShape(
        2048, 36, 16, 2, 11008, _QWEN_2_5_VOCAB, True, attention_bias=True
    ),
    "Qwen/Qwen2.5-7B-Instruct": ModelShape(3584, 28, 28, 4, 18944, 152064, False, attention_bias=True),
    # builtin:smollm2 (soar_orl/pretrained.py) is HuggingFaceTB/SmolLM2-135M-Instruct.
    "HuggingFaceTB/SmolLM2-135M-Instruct": ModelShape(576, 30, 9, 3, 1536, 49152, True),
}
KNOWN_SHAPES["builtin:smollm2"] = KNOWN_SHAPES["HuggingFaceTB/SmolLM2-135M-Instruct"]


class UnknownModelShape(LookupError):
    """Neither a local folder with a config.json nor a name in KNOWN_SHAPES."""


def model_shape(name: str, local_dir: str | Path | None = None) -> ModelShape:
    """The shape of model `name`: its table entry, else `local_dir` (or `name`) as a local
    Hugging Face folder."""
    if name in KNOWN_SHAPES:
        return KNOWN_SHAPES[name]
    config = Path(local_dir or name) / "config.json"
    if config.is_file():
        return shape_from_hf_config(json.loads(config.read_text()))
    raise UnknownModelShape(
        f"no architecture known for model {name!r}: give a local Hugging Face folder, or add the "
        f"numbers of its config.json to soar_orl.plan.shapes.KNOWN_SHAPES (known: {', '.join(KNOWN_SHAPES)})"
    )

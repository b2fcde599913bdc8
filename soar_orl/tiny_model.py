"""Tiny Llama-style models with a character-level tokenizer, made locally (no hub download).

Used by the CPU tests and by the embedded arithmetic world: the saved folder is an ordinary
Hugging Face checkpoint (config, safetensors weights, fast tokenizer with a chat template), so
vLLM, OpenRLHF and transformers load it exactly as they load a real model.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
DEFAULT_CHARS = string.digits + string.ascii_letters + string.punctuation + " \n"

# A chat template so that OpenRLHF's `apply_chat_template` path works unchanged: the prompt is
# the user text followed by a newline, the assistant answer follows it.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ message['content'] }}\n{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Shape of a tiny Llama. head_dim = hidden_size / num_attention_heads must be one that
    vLLM's CPU attention supports (64 is)."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512


def make_char_tokenizer(chars: str = DEFAULT_CHARS):
    """A fast tokenizer with one token per character (BPE without merges) and Llama's specials."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, UNK]
    unique_chars = list(dict.fromkeys(chars))
    vocab = {tok: i for i, tok in enumerate(specials + unique_chars)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def make_tiny_llama(out_dir: str | Path, spec: TinyLlamaSpec = TinyLlamaSpec(), chars: str = DEFAULT_CHARS, seed: int = 0) -> Path:
    """Create a randomly initialised tiny Llama + tokenizer and save them to `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_char_tokenizer(chars)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out

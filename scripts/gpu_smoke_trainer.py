"""Trainer-side smoke of the student on one device: StudentPolicy (OpenRLHF's Actor in a DeepSpeed
ZeRO-2 engine, its KL reference, RLOO through OpenRLHF's experience maker) on a tiny random Llama,
with neither vLLM nor a Ray cluster.

    python scripts/gpu_smoke_trainer.py                  # one CUDA GPU (about a minute)
    python scripts/gpu_smoke_trainer.py --device cpu     # the same code on DeepSpeed's CPU accelerator
    python scripts/gpu_smoke_trainer.py --without vllm,ray   # prove that neither is needed

It needs torch, deepspeed, transformers and the patched openrlhf (scripts/apply_patches.py).
OpenRLHF's module headers import vllm and ray for trainer classes this path never calls; where
either is not installed (or named in --without), an inert placeholder module stands in, and any
real use of it fails loudly. Checks, printed as a table (exit status 1 if one fails):

1. build: the DeepSpeed engine and the KL reference live on the device (issue 13, B3);
2. reset and 2 train steps on random rollouts packed on the CPU, as the worker packs them: the
   batch is moved to the device (B2), losses are finite, the weights move;
3. 3 more resets: on cuda, `torch.cuda.memory_allocated` after each stays within 1% + 1 MiB of the
   first (an engine that is not freed would add its weights and Adam states every time). DeepSpeed's
   CPU accelerator reports process RSS instead, which the allocator keeps; on cpu it is shown only.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import math
import os
import random
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MiB = 2**20


class _Inert:
    """Stands for any attribute of a missing package: import-time uses (decorators, base classes,
    names in signatures) pass, a call made by code that runs returns another inert value, and
    converting it to anything raises."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Inert:
        return _Inert(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and (isinstance(args[0], type) or callable(args[0])):
            return args[0]  # used as a decorator (e.g. @ray.remote): leave the class as it is
        return _Inert(f"{self._name}()")

    def __mro_entries__(self, bases):
        return (object,)

    def __bool__(self) -> bool:
        raise RuntimeError(f"{self._name}: placeholder of a package this smoke runs without")

    __str__ = __index__ = __float__ = __iter__ = __bool__  # type: ignore[assignment]


class _PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, packages: set[str]) -> None:
        self.packages = packages

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.packages:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__version__ = "0+placeholder"
        module.__getattr__ = lambda attr: _Inert(f"{spec.name}.{attr}")  # type: ignore[method-assign]
        return module

    def exec_module(self, module) -> None:
        pass


def install_placeholders(without: set[str]) -> list[str]:
    """Placeholders for vllm / ray where they are missing or named in `without`."""
    stood_in = sorted(p for p in ("vllm", "ray") if p in without or importlib.util.find_spec(p) is None)
    if stood_in:
        sys.meta_path.insert(0, _PlaceholderFinder(set(stood_in)))
    return stood_in


def random_rollouts(student, vocab: int, pad_id: int, rng: random.Random):
    from soar_orl.student.rollout import pack_rollouts

    rows = student.batch_prompts * student.group_size
    prompts = [[rng.randrange(4, vocab) for _ in range(rng.randint(6, 12))] for _ in range(student.batch_prompts)]
    return pack_rollouts(
        prompts_B=[p for p in prompts for _ in range(student.group_size)],
        responses_B=[[rng.randrange(4, vocab) for _ in range(rng.randint(1, student.max_new_tokens))] for _ in range(rows)],
        rewards_B=[rng.choice([0.0, 0.1, 1.0]) for _ in range(rows)],
        pad_id=pad_id,
    )


def run_smoke(device: str, dtype: str, attn: str, steps: int = 2, resets: int = 3,
              gradient_checkpointing: bool = False, adam_offload: bool = False) -> list[tuple[str, bool, str]]:
    """Run the checks; rows of (check, passed, detail)."""
    import torch
    from deepspeed.accelerator import get_accelerator

    from soar_orl.config import StudentConfig
    from soar_orl.student.policy import StudentPolicy
    from soar_orl.tiny_model import TinyLlamaSpec, make_tiny_llama

    rows: list[tuple[str, bool, str]] = []
    accelerator = get_accelerator()
    if accelerator.device_name() != device:
        raise SystemExit(f"DeepSpeed's accelerator is {accelerator.device_name()!r}, not {device!r}")
    student = StudentConfig(
        inner_steps=steps, batch_prompts=2, group_size=4, lr=1e-3, kl_coef=1e-2, max_new_tokens=12,
        train_micro_batch_size=4, gradient_checkpointing=gradient_checkpointing, adam_offload=adam_offload,
        openrlhf_args={"ds.attn_implementation": attn},
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_llama(Path(tmp) / "tiny", TinyLlamaSpec(hidden_size=256, intermediate_size=512,
                                                                      num_hidden_layers=4, num_attention_heads=4,
                                                                      num_key_value_heads=4))
        started = time.perf_counter()
        policy = StudentPolicy(model_dir, student, dtype, seed=0, backend="cuda" if device == "cuda" else "cpu")
        try:
            engine_device = next(policy.hf_model().parameters()).device
            reference_device = next(policy.reference.model.parameters()).device
            rows.append(("build: engine and KL reference on the device",
                         engine_device.type == reference_device.type == policy.device.type == device,
                         f"engine {engine_device}, reference {reference_device}, "
                         f"{time.perf_counter() - started:.1f}s, attn {policy.attn_implementation}, {dtype}"))

            rng = random.Random(0)
            started = time.perf_counter()
            policy.reset(total_steps=steps)
            before = {k: v.float().clone() for k, v in policy.state_dict().items()}
            stats = []
            for _ in range(steps):
                batch = random_rollouts(student, policy.hf_config.vocab_size, policy.tokenizer.pad_token_id, rng)
                assert batch.sequences_BT.device.type == "cpu"  # packed where the worker packs it
                stats.append(policy.train_step(batch))
            accelerator.synchronize()
            moved = sum((v.float() - before[k]).abs().sum().item() for k, v in policy.state_dict().items())
            finite = all(math.isfinite(s.loss) and math.isfinite(s.kl_mean) for s in stats)
            rows.append((f"reset + {steps} train steps on CPU-packed rollouts", finite and moved > 0,
                         "loss " + ", ".join(f"{s.loss:+.4f}" for s in stats)
                         + f"; kl {stats[-1].kl_mean:.2e}; |dW| {moved:.3g}; {time.perf_counter() - started:.1f}s"))

            memory = []
            for _ in range(resets):
                policy.reset(total_steps=steps)
                accelerator.synchronize()
                memory.append(accelerator.memory_allocated())
            flat = max(memory) - memory[0] <= 0.01 * memory[0] + MiB
            rows.append((f"{resets} resets: allocated memory flat", flat or device != "cuda",
                         ", ".join(f"{m / MiB:.1f}" for m in memory)
                         + (" MiB" if device == "cuda" else " MiB RSS (cpu: reported, not checked)")))
        finally:
            policy.actor.model.destroy()
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--attn", help="attention implementation (default: flash_attention_2 if flash_attn "
                                       "imports, else sdpa; sdpa on cpu)")
    parser.add_argument("--without", default="", help="comma-separated packages to replace by placeholders: vllm,ray")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="student.gradient_checkpointing")
    parser.add_argument("--adam-offload", action="store_true", help="student.adam_offload")
    args = parser.parse_args(argv)

    # DeepSpeed picks its accelerator once, at import.
    os.environ["DS_ACCELERATOR"] = args.device
    stood_in = install_placeholders({p for p in args.without.split(",") if p})
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible: nothing to check (use --device cpu for the CPU path)")
        return 1
    dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    attn = args.attn or ("flash_attention_2" if args.device == "cuda" and importlib.util.find_spec("flash_attn")
                         else "sdpa")
    started = time.perf_counter()
    rows = run_smoke(args.device, dtype, attn, gradient_checkpointing=args.gradient_checkpointing,
                     adam_offload=args.adam_offload)
    where = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"\ntrainer-side smoke on {where} (torch {torch.__version__}; placeholders: {', '.join(stood_in) or 'none'})")
    print("| check | result | detail |\n|---|---|---|")
    for check, passed, detail in rows:
        print(f"| {check} | {'PASS' if passed else 'FAIL'} | {detail} |")
    print(f"total {time.perf_counter() - started:.1f}s")
    return 0 if all(passed for _, passed, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

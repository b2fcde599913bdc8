"""LoRA students on one frozen base: S adapters (peft) in one model, each with its own optimizer.

The base model is loaded once; slot i is the peft adapter `slot{i}`. A job trains one slot:
reset re-initialises its A and B (B = 0, so a fresh adapter *is* the baseline) and gives it a new
optimizer and LR schedule, which is all a reset needs (no DeepSpeed engine to rebuild).

The update is the one StudentPolicy makes with DeepSpeed, from the same flags (student/flags.py,
with the adapter's learning rate): OpenRLHF's `Actor` for log-probs and the objective both share
(student/rloo.py: KL in the reward, RLOO advantages, `PolicyLoss`), gradients accumulated over
micro batches, clipped to `actor.max_norm`, one Adam step per inner step on the flags' schedule
with the flags' betas, eps, weight decay, warm-up and min-LR ratio. The optimizer is torch's AdamW on the adapter's parameters instead of a
ZeRO-2 DeepSpeed engine: a single-rank worker's ZeRO partitions nothing, and S engines over one
shared module would each own (and offload, cast, reset) the whole model. The KL anchor is the
base itself, computed with no adapter (no second copy of the weights). All slots of a lockstep
step train in one `train_step`, each slot's rows in passes through its adapter alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from soar_orl.backend import Backend
from soar_orl.config import StudentConfig
from soar_orl.openrlhf_args import openrlhf_args
from soar_orl.student.lora_weights import AdapterWeights, StateDict
from soar_orl.student.policy import inner_student_flags
from soar_orl.student.rloo import RlooObjective, StepStats, actor_around
from soar_orl.student.rollout import RolloutBatch


def lora_student_flags(model_dir: str, student: StudentConfig, dtype: str, seed: int, backend: Backend) -> dict:
    """The OpenRLHF flags of the LoRA students: the inner student's, with the adapter's learning
    rate, the one training setting in which they differ."""
    flags = inner_student_flags(model_dir, student, dtype, seed, backend)
    flags["actor.adam.lr"] = student.lora.learning_rate(student.lr)
    return flags


class LoraPolicies:
    def __init__(
        self, model_dir: str | Path, student: StudentConfig, slots: int, dtype: str, seed: int, backend: Backend
    ) -> None:
        from openrlhf.models import Actor
        from openrlhf.utils.utils import get_strategy
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not student.lora.enabled:
            raise ValueError("LoraPolicies needs student.lora.rank > 0")
        self.lora = student.lora
        self.model_dir = str(model_dir)
        self.slots = slots
        self.args = openrlhf_args(lora_student_flags(self.model_dir, student, dtype, seed, backend))
        if self.args.actor.optim != "adam":
            raise ValueError(f"LoRA students train with AdamW; student.openrlhf_args sets actor.optim={self.args.actor.optim}")
        self.device = torch.device("cuda" if backend == "cuda" else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        base = AutoModelForCausalLM.from_pretrained(
            self.model_dir, dtype=getattr(torch, dtype), attn_implementation=self.args.ds.attn_implementation
        )
        self.peft_config = PeftLoraConfig(
            r=self.lora.rank, lora_alpha=self.lora.alpha, target_modules=list(self.lora.target_modules),
            lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
        )
        torch.manual_seed(seed)
        model = get_peft_model(base, self.peft_config, adapter_name=self.slot_name(0))
        for slot in range(1, slots):
            model.add_adapter(self.slot_name(slot), self.peft_config)
        # Eval mode: the students' update uses no dropout.
        self.model = model.to(self.device).eval()
        for name, param in self.model.named_parameters():
            param.requires_grad_("lora_" in name)
        self.actor = actor_around(Actor, self.model, self.args.rollout.temperature)
        # The experience maker only reads the strategy's args: no DeepSpeed world is set up.
        self.objective = RlooObjective(self.args, get_strategy(self.args), self.tokenizer)
        self._optimizers: dict[int, tuple[torch.optim.Optimizer, object]] = {}

    @staticmethod
    def slot_name(slot: int) -> str:
        return f"slot{slot}"

    # ------------------------------------------------------------------ adapters

    def reset(self, slot: int, total_steps: int, seed: int) -> None:
        """A fresh adapter in `slot` (B = 0: the baseline exactly), a new optimizer and schedule."""
        from transformers import get_scheduler

        name = self.slot_name(slot)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in self._lora_layers():
                module.reset_lora_parameters(name, init_lora_weights=True)
        actor = self.args.actor
        optimizer = torch.optim.AdamW(
            self.parameters(slot), lr=actor.adam.lr, betas=tuple(actor.adam.betas), eps=actor.adam.eps,
            weight_decay=actor.adam.weight_decay,
        )
        # As OpenRLHF's DeepspeedStrategy.prepare builds the schedule from the same flags.
        steps = max(1, total_steps)
        scheduler = get_scheduler(
            actor.lr_scheduler, optimizer, num_warmup_steps=math.ceil(steps * actor.lr_warmup_ratio),
            num_training_steps=steps,
            scheduler_specific_kwargs={"min_lr_rate": actor.min_lr_ratio} if "with_min_lr" in actor.lr_scheduler else {},
        )
        self._optimizers[slot] = (optimizer, scheduler)

    def parameters(self, slot: int) -> list[torch.nn.Parameter]:
        name = self.slot_name(slot)
        return [p for module in self._lora_layers() for p in (*module.lora_A[name].parameters(), *module.lora_B[name].parameters())]

    def adapter(self, slot: int) -> AdapterWeights:
        """The slot's trained adapter, on the CPU, in peft's saved names."""
        from peft import get_peft_model_state_dict

        tensors = get_peft_model_state_dict(self.model, adapter_name=self.slot_name(slot))
        return AdapterWeights(
            self.lora.rank, self.lora.alpha, {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}
        )

    def set_adapter_weights(self, slot: int, adapter: AdapterWeights) -> None:
        """Load trained adapter tensors (peft's saved names) into a slot."""
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model, adapter.tensors, adapter_name=self.slot_name(slot))

    def save_adapter(self, slot: int, directory: str | Path) -> Path:
        """Write the slot's adapter as a peft folder (what vLLM's LoRARequest loads)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.adapter(slot).tensors, directory / "adapter_model.safetensors")
        config = self.peft_config.to_dict()
        config["base_model_name_or_path"] = self.model_dir
        (directory / "adapter_config.json").write_text(json.dumps(config, default=list))
        return directory

    def set_baseline(self, state: StateDict) -> None:
        """Promotion: new base weights (a merged adapter), the KL anchor too; adapters untouched."""
        base = self.model.get_base_model()
        missing, unexpected = base.load_state_dict(_base_names(state, base), strict=False)
        if unexpected or any("lora_" not in k for k in missing):
            raise ValueError(f"baseline state dict does not fit the student: missing {missing}, unexpected {unexpected}")

    def base_state_dict(self) -> StateDict:
        """The frozen base's weights (HF names, no adapter tensors)."""
        base = self.model.get_base_model()
        return {
            k.replace(".base_layer.", "."): v.detach().to("cpu", copy=True)
            for k, v in base.state_dict().items() if "lora_" not in k
        }

    # ------------------------------------------------------------------ training

    def train_step(self, slots: Sequence[int], batch: RolloutBatch) -> list[StepStats]:
        """One RLOO update of each slot's adapter.

        `batch` holds len(slots) equal blocks of rows (prompt-major inside each block); block j
        is slot j's rollouts. Each block goes through its own adapter alone (peft's active adapter),
        in passes of its own rows: peft's mixed-adapter batches would gather and scatter every
        adapter's rows out of the whole batch, forward and backward, a cost growing as slots x
        rows that dominated the step. Each slot's loss is OpenRLHF's PolicyLoss on its own rows,
        so its gradient is exactly the one a separate update gives; then it steps its own optimizer.
        """
        rows = len(batch.rewards_B) // len(slots)
        if rows * len(slots) != len(batch.rewards_B) or len(set(slots)) != len(slots):
            raise ValueError(f"{len(batch.rewards_B)} rows do not split into blocks for distinct slots {list(slots)}")
        batch = batch.to(self.device)
        micro = self.args.train.micro_batch_size
        blocks = [range(block * rows, (block + 1) * rows) for block in range(len(slots))]
        # Passes without gradients keep no activations for a backward, so they take len(slots)
        # micro batches of rows at a time (fewer, wider calls).
        wide = micro * len(slots)

        def log_probs_of(picks: Sequence[range]) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([self._log_probs(batch, picked) for picked in picks])

        def adapted() -> torch.Tensor:
            values = []
            for slot, block in zip(slots, blocks):
                self.model.set_adapter(self.slot_name(slot))
                values.append(log_probs_of(_chunks(block, wide)))
            return torch.cat(values)

        def base() -> torch.Tensor:
            with self.model.disable_adapter():  # the KL anchor is the base: no adapter at all
                return log_probs_of(_chunks(range(len(batch.rewards_B)), wide))

        experience, kl = self.objective.experience(batch, adapted(), base)
        # RLOO groups are group_size consecutive rows, so they never straddle two blocks.
        stats = []
        for slot, block in zip(slots, blocks):
            self.model.set_adapter(self.slot_name(slot))
            passes = _chunks(block, micro)
            losses = []
            for picked in passes:
                loss = self.objective.loss(self._log_probs(batch, picked), experience, list(picked))
                losses.append(loss.item())
                # As DeepSpeed's gradient accumulation does: each micro loss scaled by 1 / micro batches.
                (loss / len(passes)).backward()
            optimizer, scheduler = self._optimizers[slot]
            torch.nn.utils.clip_grad_norm_(self.parameters(slot), self.args.actor.max_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            stats.append(self.objective.stats(losses, batch, kl, slice(block.start, block.stop)))
        return stats

    def _log_probs(self, batch: RolloutBatch, picked: range) -> torch.Tensor:
        """Log-probs of rows `picked` through the active adapter (or none, inside disable_adapter)."""
        return self.actor(batch.sequences_BT[picked], batch.action_mask_BA[picked], batch.attention_mask_BT[picked])

    def _lora_layers(self):
        from peft.tuners.lora import LoraLayer

        return [m for m in self.model.modules() if isinstance(m, LoraLayer)]


def _chunks(rows: range, size: int) -> list[range]:
    """`rows` in consecutive runs of at most `size`."""
    return [range(start, min(start + size, rows.stop)) for start in range(rows.start, rows.stop, size)]


def _base_names(state: StateDict, base: torch.nn.Module) -> StateDict:
    """HF weight names -> the names inside a peft-wrapped base (adapted Linears gain `.base_layer`)."""
    own = set(base.state_dict())
    renamed = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        wrapped = f"{module}.base_layer.{leaf}"
        renamed[wrapped if wrapped in own else key] = value
    return renamed

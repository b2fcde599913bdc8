"""LoRA students on one frozen base: S adapters (peft) in one model, each with its own optimizer.

The base model is loaded once; slot i is the peft adapter `slot{i}`. A job trains one slot:
reset re-initialises its A and B (B = 0, so a fresh adapter *is* the baseline) and gives it a new
optimizer and LR schedule, which is all a reset needs (no DeepSpeed engine to rebuild).

The update is the one StudentPolicy makes with DeepSpeed: OpenRLHF's `Actor` for log-probs, the
RLOO advantages of its `RemoteExperienceMaker`, its `PolicyLoss`, gradients accumulated over
micro batches, clipped to `actor.max_norm`, one Adam step per inner step on OpenRLHF's cosine
schedule with the same betas, eps, weight decay and min-LR ratio (read from the same OpenRLHF
argument defaults). The optimizer is torch's AdamW on the adapter's parameters instead of a
ZeRO-2 DeepSpeed engine: a single-rank worker's ZeRO partitions nothing, and S engines over one
shared module would each own (and offload, cast, reset) the whole model. The KL anchor is the
base itself, computed with no adapter (no second copy of the weights). All slots of a lockstep
step train in the same forward and backward passes (`train_step`), each row through its own
adapter, which on a small model costs about what one slot alone does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from soar_orl.backend import Backend, openrlhf_backend_flags
from soar_orl.config import StudentConfig
from soar_orl.openrlhf_args import openrlhf_args
from soar_orl.student.lora_weights import AdapterWeights, StateDict
from soar_orl.student.policy import StepStats, _actor_around
from soar_orl.student.rollout import RolloutBatch


class LoraPolicies:
    def __init__(
        self, model_dir: str | Path, student: StudentConfig, slots: int, dtype: str, seed: int, backend: Backend
    ) -> None:
        from openrlhf.models import Actor, PolicyLoss
        from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
        from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController
        from openrlhf.utils.utils import get_strategy
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not student.lora.enabled:
            raise ValueError("LoraPolicies needs student.lora.rank > 0")
        self.student = student
        self.lora = student.lora
        self.model_dir = str(model_dir)
        self.slots = slots
        self.lr = student.lora.learning_rate(student.lr)
        flags = openrlhf_backend_flags(backend, dtype)
        self.args = openrlhf_args(
            {
                "actor.model_name_or_path": self.model_dir,
                "actor.adam.lr": self.lr,
                "actor.lr_scheduler": "cosine_with_min_lr",
                **flags,
                "algo.advantage.estimator": "rloo",
                "algo.kl.init_coef": student.kl_coef,
                "rollout.n_samples_per_prompt": student.group_size,
                "rollout.batch_size": student.batch_prompts,
                "rollout.temperature": student.temperature,
                "train.batch_size": student.batch_prompts * student.group_size,
                "train.micro_batch_size": student.train_micro_batch_size,
                "train.seed": seed,
            }
        )
        self.device = torch.device("cuda" if backend == "cuda" else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        base = AutoModelForCausalLM.from_pretrained(
            self.model_dir, dtype=getattr(torch, dtype), attn_implementation=flags["ds.attn_implementation"]
        )
        self.peft_config = PeftLoraConfig(
            r=self.lora.rank, lora_alpha=self.lora.alpha, target_modules=list(self.lora.target_modules),
            lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
        )
        torch.manual_seed(seed)
        model = get_peft_model(base, self.peft_config, adapter_name=self.slot_name(0))
        for slot in range(1, slots):
            model.add_adapter(self.slot_name(slot), self.peft_config)
        # Every slot trains at once through peft's mixed-adapter batches, which peft allows only
        # outside training mode (no dropout here, so eval mode changes nothing else).
        self.model = model.to(self.device).eval()
        for name, param in self.model.named_parameters():
            param.requires_grad_("lora_" in name)
        self.actor = _actor_around(Actor, self.model, student.temperature)
        self.loss_fn = PolicyLoss()
        # The experience maker only reads the strategy's args (advantage estimator, group size).
        self.experience_maker = RemoteExperienceMaker(
            None, None, None, None, FixedKLController(student.kl_coef), get_strategy(self.args), self.tokenizer
        )
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
        adam = self.args.actor.adam
        optimizer = torch.optim.AdamW(
            self.parameters(slot), lr=self.lr, betas=tuple(adam.betas), eps=adam.eps, weight_decay=adam.weight_decay
        )
        scheduler = get_scheduler(
            "cosine_with_min_lr", optimizer, num_warmup_steps=0, num_training_steps=max(1, total_steps),
            scheduler_specific_kwargs={"min_lr_rate": self.args.actor.min_lr_ratio},
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
        """One RLOO update of each slot's adapter, all in the same forward passes.

        `batch` holds len(slots) equal blocks of rows (prompt-major inside each block); block j
        is slot j's rollouts. Each row goes through its own adapter (peft's mixed-adapter batch),
        and each slot's loss is OpenRLHF's PolicyLoss on its own rows only, so its gradient is
        exactly the one a separate update would give; then each slot steps its own optimizer.
        """
        from openrlhf.models.utils import compute_approx_kl
        from openrlhf.trainer.ppo_utils.experience import Experience

        rows = len(batch.rewards_B) // len(slots)
        if rows * len(slots) != len(batch.rewards_B) or len(set(slots)) != len(slots):
            raise ValueError(f"{len(batch.rewards_B)} rows do not split into blocks for distinct slots {list(slots)}")
        adapter_R = [self.slot_name(slot) for slot in slots for _ in range(rows)]
        batch = _to_device(batch, self.device)
        with torch.no_grad():
            old_log_probs = self.actor(
                batch.sequences_BT, batch.action_mask_BA, batch.attention_mask_BT, adapter_names=adapter_R
            )
            if self.student.kl_coef > 0:
                base_log_probs = self.actor(
                    batch.sequences_BT, batch.action_mask_BA, batch.attention_mask_BT,
                    adapter_names=["__base__"] * len(adapter_R),
                )
                kl = compute_approx_kl(old_log_probs, base_log_probs, kl_estimator="k1") * batch.action_mask_BA
            else:
                base_log_probs, kl = None, torch.zeros_like(old_log_probs)
        experience = Experience(
            sequences=batch.sequences_BT,
            attention_mask=batch.attention_mask_BT,
            action_mask=batch.action_mask_BA,
            action_log_probs=old_log_probs,
            base_action_log_probs=base_log_probs,
            kl=kl,
            rewards=batch.rewards_B.clone(),
            index=list(range(len(batch.rewards_B))),
        )
        # RLOO groups are group_size consecutive rows, so they never straddle two blocks.
        (experience,) = self.experience_maker.compute_advantages_and_returns([experience])

        # As DeepSpeed's gradient accumulation does: each micro loss scaled by 1 / micro batches.
        micro = self.student.train_micro_batch_size
        starts = range(0, rows, micro)
        losses: list[list[float]] = [[] for _ in slots]
        for start in starts:
            picked = [block * rows + i for block in range(len(slots)) for i in range(start, min(start + micro, rows))]
            log_probs = self.actor(
                batch.sequences_BT[picked], batch.action_mask_BA[picked], batch.attention_mask_BT[picked],
                adapter_names=[adapter_R[i] for i in picked],
            )
            width = len(picked) // len(slots)
            total = 0.0
            for block in range(len(slots)):
                own, mine = slice(block * width, (block + 1) * width), picked[block * width : (block + 1) * width]
                loss = self.loss_fn(
                    log_probs[own], old_log_probs[mine], experience.advantages[mine],
                    action_mask=batch.action_mask_BA[mine],
                )[0]
                total = total + loss
                losses[block].append(loss.item())
            (total / len(starts)).backward()
        stats = []
        for block, slot in enumerate(slots):
            optimizer, scheduler = self._optimizers[slot]
            torch.nn.utils.clip_grad_norm_(self.parameters(slot), self.args.actor.max_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            own = slice(block * rows, (block + 1) * rows)
            tokens = batch.action_mask_BA[own].sum().clamp(min=1)
            stats.append(StepStats(
                loss=sum(losses[block]) / len(losses[block]),
                reward_mean=batch.rewards_B[own].mean().item(),
                kl_mean=(kl[own].sum() / tokens).item(),
            ))
        return stats

    def _lora_layers(self):
        from peft.tuners.lora import LoraLayer

        return [m for m in self.model.modules() if isinstance(m, LoraLayer)]


def _to_device(batch: RolloutBatch, device: torch.device) -> RolloutBatch:
    return RolloutBatch(
        batch.sequences_BT.to(device), batch.attention_mask_BT.to(device),
        batch.action_mask_BA.to(device), batch.rewards_B.to(device),
    )


def _base_names(state: StateDict, base: torch.nn.Module) -> StateDict:
    """HF weight names -> the names inside a peft-wrapped base (adapted Linears gain `.base_layer`)."""
    own = set(base.state_dict())
    renamed = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        wrapped = f"{module}.base_layer.{leaf}"
        renamed[wrapped if wrapped in own else key] = value
    return renamed

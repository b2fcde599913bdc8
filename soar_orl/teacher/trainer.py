"""The teacher: OpenRLHF's Ray RLOO trainer, driven one SOAR outer step at a time.

OpenRLHF's `PPOTrainer.fit` owns its loop (prompt dataloader -> vLLM -> per-sample reward ->
update). SOAR needs the loop outside: sample, reject invalid outputs, wait for the student pool,
then update with one reward per dataset. `TeacherTrainer` subclasses OpenRLHF's
`BasePPOTrainer` and keeps everything of one step inside OpenRLHF: its vLLM engines sample
(`SamplesGenerator`), the samples stay in the trainer actor as OpenRLHF `Experience`s, and
`BasePPOTrainer.train_step` makes the experience (actor/reference log-probs, KL), computes the
RLOO advantages (`--algo.advantage.estimator rloo`, one prompt with n_samples_per_prompt = g*n,
so the leave-one-out baseline runs over all g*n samples), trains the actor and broadcasts the
weights to the engines. Only the rewards come from us: a sample carrying a precomputed reward
is what OpenRLHF's experience maker expects when no reward model is configured.

`Teacher` (driver side) launches the pieces like OpenRLHF's `train_ppo_ray.train`: one
placement group for the teacher pool, colocated actor, reference and vLLM engines, built from an
argument namespace made by OpenRLHF's own parser (patches/0002), and removes them at the end.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import ray
from openrlhf.trainer.ppo_trainer import BasePPOTrainer

from soar_orl.backend import Backend, openrlhf_backend_flags
from soar_orl.chat import chat_prompt
from soar_orl.config import COLOCATED_ACTOR_GPU, SoarConfig
from soar_orl.openrlhf_args import openrlhf_args

log = logging.getLogger("soar")
# Room in the rollout seed's prompt count for one outer step's teacher prompts (one per engine
# and draw; rejection sampling draws a few times per step).
PROMPTS_PER_STEP = 1 << 20


class TeacherTrainer(BasePPOTrainer):
    """Runs as a Ray actor (see Teacher); holds the current step's samples between calls."""

    def __init__(self, pretrain: str, strategy, actor_group, reference_group, vllm_engines, **generate_kwargs):
        from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
        from openrlhf.utils import get_tokenizer

        tokenizer = get_tokenizer(pretrain, None, "left", strategy, use_fast=True)
        super().__init__(strategy, actor_group, None, None, reference_group, vllm_engines, tokenizer)
        self.samples_generator = SamplesGenerator(
            strategy=strategy, prompts_dataloader=None, eval_dataloader=None, tokenizer=tokenizer, vllm_engines=vllm_engines
        )
        self.generate_kwargs = generate_kwargs
        self.samples: dict[int, list] = {}  # outer step -> its Experiences, in sampling order
        self.prompts_of_step: dict[int, int] = {}  # outer step -> prompts dispatched for it

    def sample(self, instruction: str, num: int, step: int) -> list[str]:
        """Draw `num` more samples for outer step `step` (spread over the engines); their text.
        Steps are kept apart because with meta.async the next step samples before this one trains."""
        engines = len(self.vllm_engines)
        per_engine = math.ceil(num / engines)
        prompt = chat_prompt(self.tokenizer, instruction)
        # patches/0005 seeds each prompt's samples by the count of prompts dispatched: counted per
        # outer step here, a resumed run draws the samples an uninterrupted one would.
        dispatched = self.prompts_of_step.get(step, 0)
        self.samples_generator.prompts_dispatched = step * PROMPTS_PER_STEP + dispatched
        self.prompts_of_step[step] = dispatched + engines
        refs = self.samples_generator._dispatch_prompts_to_vllm(
            [prompt] * engines, [""] * engines, n_samples_per_prompt=per_engine, **self.generate_kwargs
        )
        responses = [response for ref in refs for response in ray.get(ref)][:num]
        texts = []
        for response in responses:
            experience = self.samples_generator._process_response_into_experience(response, **self.generate_kwargs)
            self.samples.setdefault(step, []).append(experience)
            tokens = response["observation_tokens"]
            action = [t for start, end in response["action_ranges"] for t in tokens[start:end]]
            texts.append(self.tokenizer.decode(action, skip_special_tokens=True))
        return texts

    def update(self, step: int, indices: list[int], rewards: list[float]) -> dict[str, Any]:
        """One RLOO update on the chosen samples of `step` (in this order) with their rewards."""
        import torch

        drawn = self.samples.pop(step)
        self.prompts_of_step.pop(step, None)
        chosen = [drawn[i] for i in indices]
        for experience, reward in zip(chosen, rewards, strict=True):
            experience.rewards = torch.tensor([reward], dtype=torch.float32)
            experience.info["reward"] = experience.rewards.clone()
        status, _ = self.train_step(chosen, step)
        return {k: v for k, v in status.items() if k != "generated_samples"}

    def discard(self, step: int) -> None:
        self.samples.pop(step, None)
        self.prompts_of_step.pop(step, None)


def teacher_flags(cfg: SoarConfig, backend: Backend, model_dir: str, output_dir: str, optimizer_dir: str,
                  load_optimizer: bool) -> dict[str, Any]:
    """OpenRLHF flags of the teacher trainer; `teacher.openrlhf_args` overrides them."""
    pools, teacher, meta = cfg.pools, cfg.teacher, cfg.meta
    group = meta.g * meta.n
    flags: dict[str, Any] = {
        "actor.model_name_or_path": model_dir,
        "actor.num_nodes": 1,
        "actor.num_gpus_per_node": pools.teacher_gpus,
        "ref.num_nodes": 1,
        "ref.num_gpus_per_node": pools.teacher_gpus,
        "actor.adam.lr": teacher.lr,
        "actor.lr_warmup_ratio": 0.0,
        "algo.advantage.estimator": "rloo",
        "algo.kl.init_coef": teacher.kl_coef,
        "rollout.n_samples_per_prompt": group,
        "rollout.batch_size": 1,
        "rollout.micro_batch_size": teacher.train_micro_batch_size,
        "rollout.max_new_tokens": teacher.max_new_tokens,
        "rollout.temperature": teacher.temperature,
        "train.batch_size": group,
        "train.micro_batch_size": teacher.train_micro_batch_size,
        "train.colocate_all": True,
        "train.seed": cfg.run.seed,
        "train.max_epochs": 1,
        "data.max_len": cfg.model.max_model_len,
        "vllm.num_engines": pools.teacher_vllm_engines,
        "vllm.tensor_parallel_size": max(1, pools.teacher_gpus // pools.teacher_vllm_engines),
        "vllm.gpu_memory_utilization": pools.vllm_gpu_memory_utilization,
        "ds.zero_stage": 2,
        **openrlhf_backend_flags(backend, cfg.model.dtype),
        "ckpt.output_dir": output_dir,
        # DeepSpeed checkpoints (weights, Adam moments, LR schedule) for resume; the previous one is
        # kept so that the one matching the loop state survives a kill during the next save.
        "ckpt.path": optimizer_dir,
        "ckpt.max_num": 2,
        "ckpt.load_enable": load_optimizer,
    }
    flags.update(teacher.openrlhf_args)
    return flags


class Teacher:
    """Driver-side handle: launches the teacher pool and calls the trainer actor."""

    def __init__(self, cfg: SoarConfig, backend: Backend, model_dir: str, output_dir: str, optimizer_dir: str,
                 resume_tag: str | None = None) -> None:
        """`resume_tag`: the optimizer checkpoint to continue from (see `save`), if any."""
        from openrlhf.trainer.ray import create_vllm_engines
        from openrlhf.trainer.ray.launcher import RayActorGroup, ReferenceModelActor
        from openrlhf.trainer.ray.ppo_actor import PolicyModelActor
        from openrlhf.utils.utils import get_strategy
        from ray.util.placement_group import placement_group

        load_optimizer = resume_tag is not None and _select_checkpoint(Path(optimizer_dir), resume_tag)
        self.args = openrlhf_args(teacher_flags(cfg, backend, model_dir, output_dir, optimizer_dir, load_optimizer))
        args = self.args
        strategy = get_strategy(args)
        gpus = args.actor.num_gpus_per_node
        bundle = {"GPU": cfg.pools.teacher_bundle_gpus, "CPU": 1}
        self.placement_group = placement_group([dict(bundle) for _ in range(gpus)], strategy="PACK")
        ray.get(self.placement_group.ready())
        self.vllm_engines = create_vllm_engines(
            args.vllm.num_engines, args.vllm.tensor_parallel_size, model_dir, args.train.seed,
            False, False, args.vllm.enforce_eager, args.data.max_len, self.placement_group,
            args.vllm.gpu_memory_utilization, False,
        )
        share = COLOCATED_ACTOR_GPU
        self.actor_group = RayActorGroup(1, gpus, PolicyModelActor, pg=self.placement_group, num_gpus_per_actor=share)
        self.reference_group = (
            RayActorGroup(1, gpus, ReferenceModelActor, pg=self.placement_group, num_gpus_per_actor=share)
            if args.algo.kl.init_coef > 0
            else None
        )
        # The controller mostly waits on the actor group and engines: it reserves no CPU.
        self.trainer = ray.remote(TeacherTrainer).options(num_cpus=0).remote(
            model_dir, strategy, self.actor_group, self.reference_group, self.vllm_engines,
            do_sample=True, max_len=args.data.max_len, max_new_tokens=args.rollout.max_new_tokens,
            temperature=args.rollout.temperature, top_p=1.0,
        )
        refs = self.actor_group.async_init_model_from_pretrained(strategy, model_dir, cfg.meta.outer_steps, self.vllm_engines)
        if self.reference_group is not None:
            refs += self.reference_group.async_init_model_from_pretrained(strategy, model_dir)
        ray.get(refs)

    def sample(self, instruction: str, num: int, step: int) -> list[str]:
        return ray.get(self.trainer.sample.remote(instruction, num, step))

    def update(self, step: int, indices: list[int], rewards: list[float]) -> dict[str, Any]:
        return ray.get(self.trainer.update.remote(step, indices, rewards))

    def discard(self, step: int) -> None:
        ray.get(self.trainer.discard.remote(step))

    def save(self, tag: str) -> Path:
        """HF weights of the teacher to ckpt.output_dir, and its DeepSpeed checkpoint (optimizer
        included) under ckpt.path as `tag`."""
        ray.get(self.actor_group.async_save_model())
        ray.get(self.actor_group.async_run_method("save_checkpoint", tag))
        return Path(self.args.ckpt.output_dir)

    def shutdown(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for actor in [self.trainer, *self.vllm_engines, *self._group_actors()]:
            ray.kill(actor)
        remove_placement_group(self.placement_group)

    def _group_actors(self) -> list:
        groups = [self.actor_group] + ([self.reference_group] if self.reference_group else [])
        return [actor for group in groups for actor in group._actor_handlers]


def _select_checkpoint(optimizer_dir: Path, tag: str) -> bool:
    """Point DeepSpeed's `latest` at `tag` (it may point at a newer save that a kill left behind);
    False when that checkpoint does not exist, so the optimizer starts fresh."""
    actor_dir = optimizer_dir / "_actor"  # where OpenRLHF's PolicyModelActor saves and loads
    if not (actor_dir / tag).is_dir():
        log.warning("no teacher optimizer checkpoint %s in %s: the teacher's optimizer starts fresh", tag, actor_dir)
        return False
    (actor_dir / "latest").write_text(tag)
    return True

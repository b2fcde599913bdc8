"""The walk world's base model: a tiny character-level Llama pretrained on noisy walks.

`builtin:walk` (resolve.py) is made here in a few minutes on a CPU, as `builtin:arith` is
(tasks/arith_model.py): a 1M-parameter Llama trained from scratch on chat examples of walks of
every length from 1 to `world.max_steps`, from every start letter, each step from a noisy letter
written right only `world.right_share` of the time (tasks/walk.py says why), in two kinds:
- student examples, `<s>g07=\\n\\boxed{gxmbqrst}</s>`;
- teacher examples, the task's instruction followed by
  `<question>g07</question> <answer>\\boxed{gxmbqrst}</answer>`, so the untrained teacher writes
  parseable pairs whose labels are as (un)reliable as the student's answers.
The result is cached in `walk-base-<hash>`; the hash covers the settings, the characters, the
prompts and WORLD_VERSION (bump it when the code changes what a given setting produces).

`builtin:walk-teacher` is that model continued on teacher examples with true walks
(WalkTeacherSettings): a teacher that knows the successor function the student knows only
unreliably, and still writes walks of every length, so that what its RL has to learn is which
questions teach, not the answers.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soar_orl.cache import build_once, cache_root, content_hash
from soar_orl.formats import QAPair, format_teacher_output
from soar_orl.tasks.pretraining import continue_training, model_key, pretrain_world_model
from soar_orl.tasks.walk import LETTERS, WalkTask, WalkWorld, walk_question
from soar_orl.tiny_model import TinyLlamaSpec

WORLD_VERSION = 1


@dataclass(frozen=True)
class WalkPretrainSettings:
    """Everything that decides the base model (all of it enters the cache hash). The shape and
    schedule are builtin:arith's; scripts/chain_probe.py measured the world with them."""

    world: WalkWorld = field(default_factory=WalkWorld)
    spec: TinyLlamaSpec = field(
        default_factory=lambda: TinyLlamaSpec(
            hidden_size=128, intermediate_size=512, num_hidden_layers=4, max_position_embeddings=256
        )
    )
    """Model shape; head_dim 64 (hidden / heads) is what vLLM's CPU attention accepts."""
    steps: int = 1500
    batch_size: int = 64
    """Examples per optimizer step, student and teacher together."""
    teacher_share: float = 1 / 8
    """Share of each batch in the teacher's format (builtin:arith's: enough for ~97% parseable
    teacher outputs there)."""
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    """Cosine decay from lr to lr * min_lr_ratio."""
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < round(self.batch_size * self.teacher_share) < self.batch_size:
            raise ValueError(
                f"teacher_share {self.teacher_share} of batch_size {self.batch_size} must leave at least "
                "one example of each kind"
            )
        if self.steps < 1 or self.lr <= 0:
            raise ValueError(f"steps and lr must be positive, got {self.steps}, {self.lr}")


def world_chars(task: WalkTask) -> str:
    """The tokenizer's characters: every character of the prompts, tags and answers, sorted."""
    example = format_teacher_output(QAPair(walk_question("a", 1), LETTERS))
    texts = [LETTERS, "0123456789", task.teacher_prompt(), task.student_prompt("a01"), example, "\n"]
    return "".join(sorted(set("".join(texts))))


def settings_key(settings: WalkPretrainSettings, task: WalkTask) -> dict[str, Any]:
    """What the cache hash covers (JSON-ready)."""
    return model_key(WORLD_VERSION, asdict(settings), world_chars(task), task)


def base_model_dir(settings: WalkPretrainSettings | None = None, rebuild: bool = False) -> Path:
    """The cached base model folder, pretrained first if it does not exist yet."""
    settings = settings or WalkPretrainSettings()
    task = WalkTask(settings.world)
    folder = cache_root() / f"walk-base-{content_hash(settings_key(settings, task))}"
    return build_once(folder, lambda out: pretrain(out, settings, task), rebuild=rebuild)


def base_examples(task: WalkTask, rng: random.Random, count: int, teacher: bool) -> list[tuple[str, str]]:
    """(prompt, response) pairs of walks as the pretraining data writes them: a start letter and a
    length drawn uniformly, each step from a noisy letter right `right_share` of the time."""
    world, rows = task.world, []
    for _ in range(count):
        start, steps = rng.choice(LETTERS), rng.randint(1, world.max_steps)
        question, walk = walk_question(start, steps), world.walk(start, steps, rng)
        if teacher:
            rows.append((task.teacher_prompt(), format_teacher_output(QAPair(question, walk))))
        else:
            rows.append((task.student_prompt(question), f"\\boxed{{{walk}}}"))
    return rows


def pretrain(out_dir: Path, settings: WalkPretrainSettings, task: WalkTask) -> None:
    """Train a fresh tiny Llama on noisy walks; save it (HF folder) into `out_dir`."""
    pretrain_world_model(
        out_dir, settings, world_chars(task),
        lambda rng, count, teacher: base_examples(task, rng, count, teacher),
        random.Random(f"walk-pretrain:{settings.seed}"), settings_key(settings, task), "pretrain walk base",
    )


# ---------------------------------------------------------------------------- the pretrained teacher


@dataclass(frozen=True)
class WalkTeacherSettings:
    """Everything that decides `builtin:walk-teacher` (all of it enters its cache hash, the base
    model's settings included): the base model continued on teacher examples only, walks of every
    length drawn as in pretraining, each labelled with the true walk."""

    base: WalkPretrainSettings = field(default_factory=WalkPretrainSettings)
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 20
    """A fresh AdamW (the base model's moments are not kept): a short warm-up first."""
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"steps, batch_size and lr must be positive, got {self.steps}, {self.batch_size}, {self.lr}")


def teacher_examples(task: WalkTask, rng: random.Random, count: int) -> list[tuple[str, str]]:
    """Teacher-format pairs of walks drawn as in pretraining, labelled with the true walk."""
    rows = []
    for _ in range(count):
        start, steps = rng.choice(LETTERS), rng.randint(1, task.world.max_steps)
        pair = QAPair(walk_question(start, steps), task.world.walk(start, steps))
        rows.append((task.teacher_prompt(), format_teacher_output(pair)))
    return rows


def teacher_settings_key(settings: WalkTeacherSettings, task: WalkTask) -> dict[str, Any]:
    """What the teacher's cache hash covers (JSON-ready): its settings and everything that
    decides the base model it starts from."""
    return {"world_version": WORLD_VERSION, "teacher": asdict(settings), "base": settings_key(settings.base, task)}


def teacher_model_dir(settings: WalkTeacherSettings | None = None, rebuild: bool = False) -> Path:
    """The cached pretrained teacher folder, trained first (from the base model) if needed."""
    settings = settings or WalkTeacherSettings()
    task = WalkTask(settings.base.world)
    key = teacher_settings_key(settings, task)
    base_dir = base_model_dir(settings.base)

    def build(out_dir: Path) -> None:
        continue_training(out_dir, base_dir, settings,
                          lambda rng: [teacher_examples(task, rng, settings.batch_size)],
                          random.Random(f"walk-teacher:{settings.seed}"), key, "pretrain walk teacher")

    return build_once(cache_root() / f"walk-teacher-{content_hash(key)}", build, rebuild=rebuild)

"""The arithmetic world's base model: a tiny character-level Llama pretrained on the easy bands.

SOAR starts teacher and student from one base model. Here we make it ourselves, in minutes on a
CPU: `soar pretrain-arith` (or the first `resolve_model("builtin:arith")`) trains a 1M-parameter
Llama from scratch on two kinds of chat examples, drawn from the easy bands and, in a small
share, from the edge bands (see tasks/arith.py for why both):
- student examples, `<s>57+38=\\n\\boxed{95}</s>`, so the student answers in the graded format;
- teacher examples, the task's fixed instruction followed by
  `<question>57+38</question> <answer>\\boxed{95}</answer>`, so the *untrained* teacher already
  writes parseable pairs (SOAR rejects the rest, and a low valid rate would waste the run).
The loss covers the response only. Batches of the two kinds are run separately: a teacher
prompt is ten times longer than a student one, and mixing them would pad every student example
to the teacher's length.

The result is cached in `arith-base-<hash>` under the soar-orl cache (soar_orl/cache.py); the hash
covers the settings below, the characters, the prompts and WORLD_VERSION, which must be bumped
whenever the code changes what a given setting produces.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soar_orl.cache import build_once, cache_root, content_hash
from soar_orl.formats import QAPair, format_teacher_output
from soar_orl.tasks import ARITH_TASKS
from soar_orl.tasks.arith import ANSWER_ORDERS, ArithTask, Band, sample_expression
from soar_orl.tasks.pretraining import continue_training, model_key, pretrain_world_model
from soar_orl.tiny_model import TinyLlamaSpec

WORLD_VERSION = 1
EASY_BANDS = (Band((1, 1)), Band((2, 1)), Band((1, 2)), Band((2, 2)))
EDGE_BANDS = (Band((3, 1)), Band((1, 3)), Band((3, 2)), Band((2, 3)), Band((3, 3)))


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that decides the base model (all of it enters the cache hash)."""

    easy_bands: tuple[Band, ...] = EASY_BANDS
    """Bands the base model is taught thoroughly (drawn uniformly, 1 - edge_share of the data)."""
    edge_bands: tuple[Band, ...] = EDGE_BANDS
    """Bands it is only shown a little of (drawn uniformly, edge_share of the data)."""
    edge_share: float = 0.25
    """Small enough that the base model only half-learns the edge bands (greedy: 3+1 digits 21%,
    3+2 7%, 3+3 0%), so its competence falls off gradually instead of at a cliff. Bands it is
    never shown are no use to SOAR: it solves them 0 times in thousands of samples (measured for
    3+2 digits after pretraining on 3+1 and 2+2, and for 4-digit and 3-term sums), so no reward
    ever reaches them."""
    spec: TinyLlamaSpec = field(
        default_factory=lambda: TinyLlamaSpec(
            hidden_size=128, intermediate_size=512, num_hidden_layers=4, max_position_embeddings=256
        )
    )
    """Model shape; head_dim 64 (hidden / heads) is what vLLM's CPU attention accepts."""
    steps: int = 1500
    """About 5 minutes on 2 idle cores; the 2-digit bands click between steps 500 and 1200."""
    batch_size: int = 64
    """Examples per optimizer step, student and teacher together."""
    teacher_share: float = 1 / 8
    """Share of each batch in the teacher's format. 1/16 already gives ~97% parseable outputs, but
    only ~20% of them with a correct answer; 1/8 gives ~50%, and the answers are the labels."""
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    """Cosine decay from lr to lr * min_lr_ratio."""
    weight_decay: float = 0.01
    seed: int = 0
    answer_order: str = "msd"
    """How its answers are written (tasks/arith.py ANSWER_ORDERS): `msd` for `builtin:arith`,
    `lsd` (units first) for `builtin:arith-lsd`; the examples are otherwise the same draws."""

    def __post_init__(self) -> None:
        if self.answer_order not in ANSWER_ORDERS:
            raise ValueError(f"answer_order must be one of {ANSWER_ORDERS}, got {self.answer_order!r}")
        if not self.easy_bands:
            raise ValueError("easy_bands must name at least one band")
        if not 0 <= self.edge_share < 1 or (self.edge_share > 0 and not self.edge_bands):
            raise ValueError(f"edge_share must lie in [0, 1) and needs edge_bands, got {self.edge_share}")
        if not 0 < round(self.batch_size * self.teacher_share) < self.batch_size:
            raise ValueError(
                f"teacher_share {self.teacher_share} of batch_size {self.batch_size} must leave at least "
                "one example of each kind"
            )
        if self.steps < 1 or self.lr <= 0:
            raise ValueError(f"steps and lr must be positive, got {self.steps}, {self.lr}")


# The built-in base models by world name (`builtin:NAME`, resolve.py): one per arithmetic task,
# the one that answers in that task's order.
WORLDS = {name: PretrainSettings(answer_order=order) for name, order in ARITH_TASKS.items()}


def world_task(settings: PretrainSettings) -> ArithTask:
    """The task a base model pretrained with `settings` answers."""
    return ArithTask(answer_order=settings.answer_order)


def world_chars(task: ArithTask) -> str:
    """The tokenizer's characters: every character of the prompts, tags and answers (sorted,
    so the vocabulary does not depend on the order the strings are listed in)."""
    texts = [
        "0123456789",
        task.teacher_prompt(),
        task.student_prompt("1+1"),
        task.student_answer(1),
        format_teacher_output(QAPair("1", "1")),
        "\n",  # the chat template ends the user turn with a newline
    ]
    return "".join(sorted(set("".join(texts))))


def _settings_fields(settings: PretrainSettings) -> dict[str, Any]:
    """`settings` as a dict, without answer_order when it is the default `msd`: the hash of the
    models built before the field existed stays theirs."""
    fields = asdict(settings)
    if fields["answer_order"] == "msd":
        del fields["answer_order"]
    return fields


def settings_key(settings: PretrainSettings, task: ArithTask) -> dict[str, Any]:
    """What the cache hash covers (JSON-ready)."""
    return model_key(WORLD_VERSION, _settings_fields(settings), world_chars(task), task)


def base_model_dir(settings: PretrainSettings | None = None, rebuild: bool = False) -> Path:
    """The cached base model folder, pretrained first if it does not exist yet."""
    settings = settings or PretrainSettings()
    task = world_task(settings)
    folder = cache_root() / f"arith-base-{content_hash(settings_key(settings, task))}"
    return build_once(folder, lambda out: pretrain(out, settings, task), rebuild=rebuild)


# ---------------------------------------------------------------------------- the pretrained teacher


@dataclass(frozen=True)
class TeacherSettings:
    """Everything that decides the pretrained teacher, `builtin:arith-teacher` (all of it enters
    its cache hash, the base model's settings included): the base model continued on teacher
    examples only, `<question>a+b</question> <answer>\\boxed{c}</answer>` with the right c.

    Why: the base teacher writes mostly easy sums and mostly wrong answers (RESULTS.md, issue 18
    rung 2), and a wrong label earns nothing however good the question. This teacher is meant to
    answer right across the bands while still writing all of them, so that what the RL has to
    learn is which problems to write, not how to add."""

    base: PretrainSettings = field(default_factory=PretrainSettings)
    """The base model it starts from (the student's; tasks/arith_model.base_model_dir)."""
    bands: tuple[Band, ...] = EASY_BANDS + EDGE_BANDS
    """Bands its examples are drawn from, uniformly: every band the base model was shown, so the
    mix it writes stays broad (4/9 easy, 5/9 edge) and the RL still has to pick among them."""
    steps: int = 100
    """Set by the time the first build had (2026-12-02): 315 s of CPU (740 s wall on a loaded
    2-core machine), a teacher prompt being ten times a student one. Too few: its answers are
    no more often right than the base teacher's (RESULTS.md, issue 18 rung 2, "A pretrained
    teacher"); only its band mix moved."""
    batch_size: int = 64
    """Teacher examples per optimizer step."""
    lr: float = 1e-3
    """Peak learning rate; the base model's was 3e-3 from scratch."""
    warmup_steps: int = 20
    """A fresh AdamW (the base model's moments are not kept): a short warm-up first."""
    min_lr_ratio: float = 0.1
    """Cosine decay from lr to lr * min_lr_ratio."""
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.bands:
            raise ValueError("bands must name at least one band")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(
                f"steps, batch_size and lr must be positive, got {self.steps}, {self.batch_size}, {self.lr}"
            )


def teacher_settings_key(settings: TeacherSettings, task: ArithTask) -> dict[str, Any]:
    """What the teacher's cache hash covers (JSON-ready): its settings and everything that
    decides the base model it starts from."""
    teacher = {**asdict(settings), "base": _settings_fields(settings.base)}
    return {"world_version": WORLD_VERSION, "teacher": teacher, "base": settings_key(settings.base, task)}


def teacher_model_dir(settings: TeacherSettings | None = None, rebuild: bool = False) -> Path:
    """The cached pretrained teacher folder, trained first (from the base model) if needed."""
    settings = settings or TeacherSettings()
    task = world_task(settings.base)
    folder = cache_root() / f"arith-teacher-{content_hash(teacher_settings_key(settings, task))}"
    base_dir = base_model_dir(settings.base)
    return build_once(folder, lambda out: pretrain_teacher(out, base_dir, settings, task), rebuild=rebuild)


# ---------------------------------------------------------------------------- pretraining


def _example(task: ArithTask, band: Band, rng: random.Random, teacher: bool) -> tuple[str, str]:
    """One (prompt, response) pair of a fresh sum of `band`: the teacher's or the student's."""
    question, value = sample_expression(band, rng)
    if teacher:
        return task.teacher_prompt(), format_teacher_output(QAPair(question, task.written_answer(value)))
    return task.student_prompt(question), task.student_answer(value)


def base_examples(task: ArithTask, settings: PretrainSettings, rng: random.Random, count: int, teacher: bool):
    """The base model's examples: an edge band with probability edge_share, else an easy one."""
    examples = []
    for _ in range(count):
        bands = settings.edge_bands if rng.random() < settings.edge_share else settings.easy_bands
        examples.append(_example(task, rng.choice(bands), rng, teacher))
    return examples


def teacher_examples(task: ArithTask, settings: TeacherSettings, rng: random.Random, count: int):
    """The pretrained teacher's examples: teacher-format pairs of bands drawn uniformly."""
    return [_example(task, rng.choice(settings.bands), rng, teacher=True) for _ in range(count)]


def pretrain(out_dir: Path, settings: PretrainSettings, task: ArithTask) -> None:
    """Train a fresh tiny Llama on the easy and edge bands; save it (HF folder) into `out_dir`."""
    pretrain_world_model(
        out_dir, settings, world_chars(task),
        lambda rng, count, teacher: base_examples(task, settings, rng, count, teacher),
        random.Random(f"arith-pretrain:{settings.seed}"), settings_key(settings, task), "pretrain arith base",
    )


def pretrain_teacher(out_dir: Path, base_dir: Path, settings: TeacherSettings, task: ArithTask) -> None:
    """Continue the base model in `base_dir` on teacher examples only; save it into `out_dir`."""
    continue_training(
        out_dir, base_dir, settings,
        lambda rng: [teacher_examples(task, settings, rng, settings.batch_size)],
        random.Random(f"arith-teacher:{settings.seed}"), teacher_settings_key(settings, task), "pretrain arith teacher",
    )

"""Issue 18, rung 2 (exploratory): with the sum written out column by column, does practising
one length carry over to the next?

    bash run.sh python scripts/arith_scratchpad_probe.py OUT_DIR [scratchpad|plain ...]

Stepping stones need problems whose practice moves the student on problems it cannot solve. In
the arithmetic world a band is learnt only by practising it (scripts/arith_transfer_probe.py,
RESULTS.md): the 1M-parameter model has no shared procedure to extend. A scratchpad gives it one.
The student writes one column per step, units first, with the carry in front:
`347+85=` -> `0+7+5=12;1+4+8=13;1+3+0=4;\\boxed{432}`, so every column is the same one-digit
rule, and a longer sum is a longer chain of it. If fine-tuning on sums one digit longer than any
the base model was taught also raises its success two digits longer, the world has what SOAR
needs: hard problems (out of reach) that are compositions of learnable steps.

It pretrains a base model on every band up to PRETRAIN_DIGITS digits per operand (the same
model shape and schedule as `builtin:arith`, student examples only), measures the sampled
success of each band in MEASURED_BANDS, fine-tunes a copy on each band in FINE_TUNE_BANDS
(true answers, supervised, half of each batch replaying the pretraining mix) and measures again.
`plain` is the control: the same bands and steps with the answer boxed directly. It writes
`scratchpad-FORMAT.json` and prints a table per format: rows = fine-tuned band, columns =
measured band.

Pure torch and transformers (Hugging Face sampling, no vLLM): an exploration to decide whether a
new world is worth building, not a product measurement.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from soar_orl.chat import chat_prompt
from soar_orl.formats import extract_last_boxed
from soar_orl.tasks.arith import ArithTask, Band, sample_expression
from soar_orl.tasks.arith_model import train_and_save, world_chars
from soar_orl.tiny_model import TinyLlamaSpec, make_tiny_llama

FORMATS = ("scratchpad", "plain")
PRETRAIN_DIGITS = 3
MEASURED_BANDS = (Band((3, 3)), Band((4, 3)), Band((4, 4)), Band((5, 4)), Band((5, 5)), Band((6, 6)))
FINE_TUNE_BANDS = (Band((3, 3)), Band((4, 4)))
PROBLEMS, SAMPLES, MAX_TOKENS = 64, 8, 96


@dataclass(frozen=True)
class Pretrain:
    """The base model's schedule (a tasks/arith_model.TrainSchedule): builtin:arith's shape,
    steps, batch and learning rate; every band up to PRETRAIN_DIGITS digits, uniformly."""

    spec: TinyLlamaSpec = field(default_factory=lambda: TinyLlamaSpec(
        hidden_size=128, intermediate_size=512, num_hidden_layers=4, max_position_embeddings=256))
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0


@dataclass(frozen=True)
class FineTune:
    """The supervised fine-tune on one band (a tasks/arith_model.TrainSchedule); as in
    scripts/arith_transfer_probe.py, half of each batch replays the pretraining mix."""

    replay_share: float = 0.5
    steps: int = 400
    """100 steps (the transfer probe's) leave 4+4 sums at 0.4%: four columns written, the units
    digit of the first operand still misread."""
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0


PRETRAIN_BANDS = tuple(Band((a, b)) for a in range(1, PRETRAIN_DIGITS + 1) for b in range(1, PRETRAIN_DIGITS + 1))


def columns(question: str) -> str:
    """The scratchpad of a two-operand sum: per column, units first, `carry+digit+digit=sum;`."""
    a, b = question.split("+")
    width = max(len(a), len(b))
    a, b = a.zfill(width), b.zfill(width)
    steps, carry = [], 0
    for da, db in zip(reversed(a), reversed(b)):
        total = carry + int(da) + int(db)
        steps.append(f"{carry}+{da}+{db}={total};")
        carry = total // 10
    return "".join(steps)


def response(question: str, value: int, fmt: str) -> str:
    box = f"\\boxed{{{value}}}"
    return columns(question) + box if fmt == "scratchpad" else box


def examples(bands, rng: random.Random, count: int, fmt: str, task: ArithTask) -> list[tuple[str, str]]:
    rows = []
    for _ in range(count):
        question, value = sample_expression(rng.choice(bands), rng)
        rows.append((task.student_prompt(question), response(question, value, fmt)))
    return rows


def load(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


def pretrain(out: Path, fmt: str, task: ArithTask) -> None:
    settings = Pretrain()
    make_tiny_llama(out, settings.spec, chars="".join(sorted(set(world_chars(task) + ";"))), seed=settings.seed)
    tokenizer, model = load(out)
    train_and_save(out, model, tokenizer, settings,
                   lambda rng: [examples(PRETRAIN_BANDS, rng, settings.batch_size, fmt, task)],
                   random.Random(f"scratchpad-pretrain:{settings.seed}"), {"format": fmt, **asdict(settings)},
                   f"pretrain {fmt}")


def fine_tune(base: Path, out: Path, band: Band, fmt: str, task: ArithTask) -> None:
    settings = FineTune()
    tokenizer, model = load(base)
    tokenizer.save_pretrained(out)
    replayed = round(settings.batch_size * settings.replay_share)

    def draw(rng: random.Random) -> list[list[tuple[str, str]]]:
        return [examples(PRETRAIN_BANDS, rng, replayed, fmt, task)
                + examples((band,), rng, settings.batch_size - replayed, fmt, task)]

    train_and_save(out, model, tokenizer, settings, draw, random.Random(f"fine-tune:{band.name}"),
                   {"format": fmt, "band": band.name, **asdict(settings)}, f"fine-tune {fmt} {band.name}")


@torch.no_grad()
def success(folder: Path, task: ArithTask) -> dict[str, float]:
    """Share of correct samples per band: PROBLEMS fresh sums x SAMPLES at temperature 1 (the
    boxed value is graded; the scratchpad is not)."""
    tokenizer, model = load(folder)
    model.eval()
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    rates = {}
    for band in MEASURED_BANDS:
        rng = random.Random(f"scratchpad-measure:{band.name}")
        sums = [sample_expression(band, rng) for _ in range(PROBLEMS)]
        prompts = [chat_prompt(tokenizer, task.student_prompt(q)) for q, _ in sums]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        generated = model.generate(
            **batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=MAX_TOKENS,
            num_return_sequences=SAMPLES, pad_token_id=tokenizer.pad_token_id,
        )
        texts = tokenizer.batch_decode(generated[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
        values = [value for _, value in sums for _ in range(SAMPLES)]
        rates[band.name] = sum(extract_last_boxed(t) == str(v) for t, v in zip(texts, values, strict=True)) / len(texts)
    return rates


def main(out: Path, formats: list[str]) -> None:
    task = ArithTask()
    for fmt in formats:
        started = time.monotonic()
        base = out / f"base-{fmt}"
        if not (base / "model.safetensors").exists():
            pretrain(base, fmt, task)
        rows = {"base": success(base, task)}
        for band in FINE_TUNE_BANDS:
            tuned = out / f"tuned-{fmt}-{band.name.replace(',', '+')}-{FineTune().steps}steps"
            if not (tuned / "model.safetensors").exists():
                fine_tune(base, tuned, band, fmt, task)
            rows[f"fine-tuned on {band.name}"] = success(tuned, task)
        result = {"format": fmt, "pretrain": asdict(Pretrain()), "fine_tune": asdict(FineTune()),
                  "problems": PROBLEMS, "samples": SAMPLES, "success": rows,
                  "seconds": round(time.monotonic() - started, 1)}
        (out / f"scratchpad-{fmt}.json").write_text(json.dumps(result, indent=2) + "\n")
        names = [band.name for band in MEASURED_BANDS]
        print(f"\n{fmt}: sampled success (%), {PROBLEMS} sums x {SAMPLES} samples per band")
        print("| student | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for label, rates in rows.items():
            print(f"| {label} | " + " | ".join(f"{100 * rates[n]:.1f}" for n in names) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2 or any(f not in FORMATS for f in sys.argv[2:]):
        raise SystemExit(__doc__)
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    main(target, sys.argv[2:] or ["scratchpad"])

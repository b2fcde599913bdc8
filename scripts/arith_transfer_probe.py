"""Issue 18, rung 2 (exploratory): does practising one band of sums carry over to another, and
does it when answers are written least-significant digit first?

    bash run.sh python scripts/arith_transfer_probe.py OUT_DIR [msd|lsd ...]

SOAR needs stepping stones: problems whose training moves the student on problems it cannot
solve. In the arithmetic world a band is learnt on its own (RESULTS.md: RLOO on 3+2 sums raises
3+2 success threefold and leaves 2+3 and 3+3 where they were), so no band is a stepping stone for
another. A digit-by-digit answer order is the direction the issue names: written units first,
each answer digit depends only on the aligned operand digits and one carry, the same rule in every
column, which a small model may learn once for all bands.

For `msd` it takes `builtin:arith` itself; for `lsd` it pretrains a base model exactly as
`builtin:arith` is made (tasks/arith_model.py PretrainSettings: same bands, shares, steps, seed;
only the digits inside `\\boxed{}` reversed, in the student's and the teacher's examples; run it
alone on idle cores, as the base model was: with other threads its numbers differ, and whether
the 2-digit bands "click" before the last step depends on them). It measures the sampled
success of each band in MEASURED_BANDS (fresh sums, temperature 1), then fine-tunes a copy on true
answers of one band (FINE_TUNE_BANDS, supervised: a cheap stand-in for RLOO on true-labelled data,
the same for both orders; half of each batch replays the base model's own mix) and measures again.
It also samples the base model as the teacher and counts, per band, the pairs it writes and those
with the right answer. It writes `transfer-ORDER.json` and prints a table per
order: rows = fine-tuned band, columns = measured band.

Pure torch and transformers (Hugging Face sampling, no vLLM): an exploration to decide whether a
new world version is worth building, not a product measurement.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from arith_probe_lib import Schedule, load, sampled_success

from soar_orl.chat import chat_prompt
from soar_orl.formats import QAPair, extract_last_boxed, format_teacher_output
from soar_orl.tasks.arith import ArithTask, Band, parse_sum, sample_expression
from soar_orl.tasks.arith_model import (
    PretrainSettings,
    base_examples,
    base_model_dir,
    world_chars,
)
from soar_orl.tasks.pretraining import train_and_save
from soar_orl.tiny_model import make_tiny_llama

ORDERS = ("msd", "lsd")
MEASURED_BANDS = (Band((2, 2)), Band((3, 1)), Band((3, 2)), Band((2, 3)), Band((3, 3)), Band((4, 1)), Band((4, 2)))
FINE_TUNE_BANDS = (Band((3, 2)), Band((3, 3)))
PROBLEMS, SAMPLES, MAX_TOKENS = 128, 16, 16


# The supervised fine-tune on one band. REPLAY_SHARE of each batch is drawn from the base
# model's own student examples (its bands and shares): without it, 100 steps on one band wipe
# out the others (2+2 from 84% to 0), and the forgetting hides any transfer.
FINE_TUNE = Schedule(steps=100, batch_size=64, lr=1e-3, warmup_steps=10)
REPLAY_SHARE = 0.5


def written(value: int, order: str) -> str:
    """The digits of an answer as the world of `order` writes them."""
    return str(value) if order == "msd" else str(value)[::-1]


def boxed(value: int, order: str) -> str:
    """The student's graded response in the world of `order` (tasks/arith.py student_answer's form)."""
    return f"\\boxed{{{written(value, order)}}}"


def reorder(examples: list[tuple[str, str]], order: str, teacher: bool) -> list[tuple[str, str]]:
    """The base model's examples with their answers rewritten in `order` (sums recomputed)."""
    out = []
    for prompt, response in examples:
        value = int(extract_last_boxed(response))
        if teacher:
            question = response.split("<question>")[1].split("</question>")[0]
            out.append((prompt, format_teacher_output(QAPair(question, written(value, order)))))
        else:
            out.append((prompt, boxed(value, order)))
    return out


def pretrain(out: Path, order: str, task: ArithTask) -> None:
    settings = PretrainSettings()
    make_tiny_llama(out, settings.spec, chars=world_chars(task), seed=settings.seed)
    tokenizer, model = load(out)
    n_teacher = round(settings.batch_size * settings.teacher_share)

    def draw(rng: random.Random) -> list[list[tuple[str, str]]]:
        return [
            reorder(base_examples(task, settings, rng, settings.batch_size - n_teacher, teacher=False),
                    order, False),
            reorder(base_examples(task, settings, rng, n_teacher, teacher=True), order, True),
        ]

    rng = random.Random(f"arith-pretrain:{settings.seed}")  # the same draws as builtin:arith
    train_and_save(out, model, tokenizer, settings, draw, rng, {"order": order, **asdict(settings)},
                   f"pretrain {order}")


def fine_tune(base: Path, out: Path, band: Band, order: str, task: ArithTask) -> None:
    tokenizer, model = load(base)
    tokenizer.save_pretrained(out)

    replayed = round(FINE_TUNE.batch_size * REPLAY_SHARE)

    def draw(rng: random.Random) -> list[list[tuple[str, str]]]:
        rows = reorder(base_examples(task, PretrainSettings(), rng, replayed, teacher=False), order, False)
        for _ in range(FINE_TUNE.batch_size - replayed):
            question, value = sample_expression(band, rng)
            rows.append((task.student_prompt(question), boxed(value, order)))
        return [rows]

    train_and_save(out, model, tokenizer, FINE_TUNE, draw, random.Random(f"fine-tune:{band.name}"),
                   {"order": order, "band": band.name, "replay_share": REPLAY_SHARE, **asdict(FINE_TUNE)},
                   f"fine-tune {order} {band.name}")


def success(folder: Path, order: str, task: ArithTask) -> dict[str, float]:
    """Share of correct samples per band: PROBLEMS fresh sums x SAMPLES at temperature 1."""
    return sampled_success(folder, MEASURED_BANDS, task.student_prompt,
                           lambda text, _, value: extract_last_boxed(text) == written(value, order),
                           PROBLEMS, SAMPLES, MAX_TOKENS, "transfer-measure")


@torch.no_grad()
def teacher_right(folder: Path, order: str, task: ArithTask, samples: int = 512) -> dict[str, list[int]]:
    """The base model as the teacher: of `samples` outputs at temperature 1, per band of plain
    two-operand sums, [pairs written, pairs whose answer is right in the world's order]."""
    tokenizer, model = load(folder)
    model.eval()
    torch.manual_seed(0)
    batch = tokenizer([chat_prompt(tokenizer, task.teacher_prompt())], return_tensors="pt", add_special_tokens=False)
    generated = model.generate(**batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=64,
                               num_return_sequences=samples, pad_token_id=tokenizer.pad_token_id)
    counts: dict[str, list[int]] = {}
    for text in tokenizer.batch_decode(generated[:, batch.input_ids.shape[1]:], skip_special_tokens=True):
        pair = task.parse_teacher_output(text)
        operands = parse_sum(pair.question) if isinstance(pair, QAPair) else None
        if operands is None or len(operands) != 2:
            continue
        a, b = operands
        entry = counts.setdefault(f"{len(a)}+{len(b)}", [0, 0])
        entry[0] += 1
        entry[1] += pair.answer == written(int(a) + int(b), order)
    return dict(sorted(counts.items()))


def main(out: Path, orders: list[str]) -> None:
    task = ArithTask()
    for order in orders:
        started = time.monotonic()
        base = base_model_dir() if order == "msd" else out / f"base-{order}"
        if not (base / "model.safetensors").exists():
            pretrain(base, order, task)
        rows = {"base": success(base, order, task)}
        teacher = teacher_right(base, order, task)
        for band in FINE_TUNE_BANDS:
            tuned = out / f"tuned-{order}-{band.name.replace(',', '+')}-replay{REPLAY_SHARE:g}"
            if not (tuned / "model.safetensors").exists():
                fine_tune(base, tuned, band, order, task)
            rows[f"fine-tuned on {band.name}"] = success(tuned, order, task)
        (out / f"transfer-{order}.json").write_text(json.dumps({**rows, "teacher": teacher}, indent=1) + "\n")
        header = " | ".join(b.name for b in MEASURED_BANDS)
        print(f"\n{order} ({time.monotonic() - started:.0f} s): success per sample (%), {SAMPLES} samples of "
              f"{PROBLEMS} fresh sums per band\n| model | {header} |\n|---|{'---:|' * len(MEASURED_BANDS)}")
        for name, rates in rows.items():
            print(f"| {name} | " + " | ".join(f"{100 * rates[b.name]:.2f}" for b in MEASURED_BANDS) + " |")
        print("base model as teacher, 512 samples: band written / right: "
              + ", ".join(f"{band} {n} / {right}" for band, (n, right) in teacher.items()))


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    main(out_dir, sys.argv[2:] or list(ORDERS))

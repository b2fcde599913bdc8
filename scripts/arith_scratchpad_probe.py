"""Issue 18, rung 2 (exploratory): with the sum written out column by column, does practising
one length carry over to the next?

    bash run.sh python scripts/arith_scratchpad_probe.py OUT_DIR [scratchpad|plain|pairs|indexed ...]

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
`plain` is the control: the same bands and steps with the answer boxed directly. `pairs` gives
the question as its aligned digit pairs, units first (`75;48;30;=` for 347+85), and the answer as
one `digit carry;` per column (`21;31;40;`), so that no digit has to be found by its place in an
operand (still by its distance: the answer starts after the whole question, so the k-th answer
column lies 3n + const after its pair in an n-column sum, RESULTS.md). `indexed` writes a
position label before every pair and every answer column (`a75;b48;c30;=` -> `a21;b31;c40;`),
so that a column can be found by its label instead of its distance. It writes
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
from dataclasses import asdict
from pathlib import Path

from arith_probe_lib import Schedule, load, sampled_success

from soar_orl.formats import extract_last_boxed
from soar_orl.tasks.arith import ArithTask, Band, sample_expression
from soar_orl.tasks.arith_model import world_chars
from soar_orl.tasks.pretraining import train_and_save
from soar_orl.tiny_model import TinyLlamaSpec, make_tiny_llama

FORMATS = ("scratchpad", "plain", "pairs", "indexed")
COLUMN_LABELS = "abcdefghij"  # `indexed`: the label of each column, units first
PRETRAIN_DIGITS = 3
PRETRAIN_BANDS = tuple(Band((a, b)) for a in range(1, PRETRAIN_DIGITS + 1)
                       for b in range(1, PRETRAIN_DIGITS + 1))
MEASURED_BANDS = tuple(Band(digits) for digits in ((3, 3), (4, 3), (4, 4), (5, 4), (5, 5), (6, 6), (8, 8)))
FINE_TUNE_BANDS = (Band((3, 3)), Band((4, 4)))
PROBLEMS, SAMPLES, MAX_TOKENS = 64, 8, 96

# The base model: builtin:arith's shape, steps, batch and learning rate, student examples only,
# every band up to PRETRAIN_DIGITS digits drawn uniformly.
SPEC = TinyLlamaSpec(hidden_size=128, intermediate_size=512, num_hidden_layers=4, max_position_embeddings=256)
PRETRAIN = Schedule(steps=1500, batch_size=64, lr=3e-3, warmup_steps=50)
# The fine-tune on one band; as in scripts/arith_transfer_probe.py, REPLAY_SHARE of each batch
# replays the pretraining mix. 100 steps (that probe's) leave 4+4 sums at 0.4%: four columns
# written, the units digit of the first operand still misread.
FINE_TUNE = Schedule(steps=400, batch_size=64, lr=1e-3, warmup_steps=10)
REPLAY_SHARE = 0.5


def aligned(question: str) -> list[tuple[str, str]]:
    """The digit pairs of a two-operand sum's columns, units first (the shorter operand zero-padded)."""
    a, b = question.split("+")
    width = max(len(a), len(b))
    return list(zip(reversed(a.zfill(width)), reversed(b.zfill(width)), strict=True))


def column_sums(question: str) -> list[tuple[int, str, str, int]]:
    """Per column, units first: (carry in, digit, digit, their total)."""
    rows, carry = [], 0
    for da, db in aligned(question):
        total = carry + int(da) + int(db)
        rows.append((carry, da, db, total))
        carry = total // 10
    return rows


def columns(question: str) -> str:
    """The scratchpad of a two-operand sum: per column, units first, `carry+digit+digit=sum;`."""
    return "".join(f"{carry}+{da}+{db}={total};" for carry, da, db, total in column_sums(question))


def labels(question: str, fmt: str) -> list[str]:
    """The position label of each column of `question` in the `indexed` format, else empty ones.
    Labels are consecutive letters from a start drawn per question (a hash of it), so that every
    label is seen at every column during pretraining: only the number of columns is new in a
    longer sum."""
    width = len(aligned(question))
    if fmt != "indexed":
        return [""] * width
    start = random.Random(f"labels:{question}").randrange(len(COLUMN_LABELS) - width + 1)
    return list(COLUMN_LABELS[start:start + width])


def prompt(question: str, fmt: str, task: ArithTask) -> str:
    """The student's prompt: the task's (`347+85=`), or for `pairs` the aligned digit pairs,
    units first (`75;48;30;=`), for `indexed` each pair after its column's label (`e75;f48;g30;=`)."""
    if fmt in ("pairs", "indexed"):
        pairs = zip(labels(question, fmt), aligned(question), strict=True)
        return "".join(f"{name}{da}{db};" for name, (da, db) in pairs) + "="
    return task.student_prompt(question)


def response(question: str, value: int, fmt: str) -> str:
    """The graded response: the scratchpad and the box, the box alone, or for `pairs` one
    `digit carry;` per column (`21;31;40;` for 347+85), for `indexed` after the column's label
    (`e21;f31;g40;`)."""
    if fmt in ("pairs", "indexed"):
        sums = zip(labels(question, fmt), column_sums(question), strict=True)
        return "".join(f"{name}{total % 10}{total // 10};" for name, (_, _, _, total) in sums)
    box = f"\\boxed{{{value}}}"
    return columns(question) + box if fmt == "scratchpad" else box


def columns_value(text: str, question: str, fmt: str) -> int | None:
    """The sum a `pairs`/`indexed` response to `question` spells (its digits units first, then the
    last carry; `indexed` labels those of the question's columns), else None."""
    steps = text.strip().split(";")
    if len(steps) < 2 or steps[-1] or len(steps) - 1 > len(COLUMN_LABELS):
        return None
    steps = steps[:-1]
    names = labels(question, fmt)
    names += ["?"] * (len(steps) - len(names))  # a column the question lacks matches no label
    if any(step != names[k] + step[-2:] or not step[-2:].isdigit() for k, step in enumerate(steps)):
        return None
    return sum(int(step[-2]) * 10**k for k, step in enumerate(steps)) + int(steps[-1][-1]) * 10 ** len(steps)


def is_right(text: str, question: str, value: int, fmt: str) -> bool:
    if fmt in ("pairs", "indexed"):
        return columns_value(text, question, fmt) == value
    return extract_last_boxed(text) == str(value)


def examples(bands, rng: random.Random, count: int, fmt: str, task: ArithTask) -> list[tuple[str, str]]:
    rows = []
    for _ in range(count):
        question, value = sample_expression(rng.choice(bands), rng)
        rows.append((prompt(question, fmt, task), response(question, value, fmt)))
    return rows


def pretrain(out: Path, fmt: str, task: ArithTask) -> None:
    labels = COLUMN_LABELS if fmt == "indexed" else ""  # the other formats' vocabularies stay as built
    chars = "".join(sorted(set(world_chars(task) + ";" + labels)))
    make_tiny_llama(out, SPEC, chars=chars, seed=PRETRAIN.seed)
    tokenizer, model = load(out)
    train_and_save(out, model, tokenizer, PRETRAIN,
                   lambda rng: [examples(PRETRAIN_BANDS, rng, PRETRAIN.batch_size, fmt, task)],
                   random.Random(f"scratchpad-pretrain:{PRETRAIN.seed}"),
                   {"format": fmt, "spec": asdict(SPEC), **asdict(PRETRAIN)}, f"pretrain {fmt}")


def fine_tune(base: Path, out: Path, band: Band, fmt: str, task: ArithTask) -> None:
    tokenizer, model = load(base)
    tokenizer.save_pretrained(out)
    replayed = round(FINE_TUNE.batch_size * REPLAY_SHARE)

    def draw(rng: random.Random) -> list[list[tuple[str, str]]]:
        return [examples(PRETRAIN_BANDS, rng, replayed, fmt, task)
                + examples((band,), rng, FINE_TUNE.batch_size - replayed, fmt, task)]

    train_and_save(out, model, tokenizer, FINE_TUNE, draw, random.Random(f"fine-tune:{band.name}"),
                   {"format": fmt, "band": band.name, "replay_share": REPLAY_SHARE, **asdict(FINE_TUNE)},
                   f"fine-tune {fmt} {band.name}")


def success(folder: Path, fmt: str, task: ArithTask) -> dict[str, float]:
    """Sampled success per band of MEASURED_BANDS (the boxed value is graded, the scratchpad is not)."""
    return sampled_success(folder, MEASURED_BANDS, lambda question: prompt(question, fmt, task),
                           lambda text, question, value: is_right(text, question, value, fmt),
                           PROBLEMS, SAMPLES, MAX_TOKENS, "scratchpad-measure")


def main(out: Path, formats: list[str]) -> None:
    task = ArithTask()
    for fmt in formats:
        started = time.monotonic()
        base = out / f"base-{fmt}"
        if not (base / "model.safetensors").exists():
            pretrain(base, fmt, task)
        rows = {"base": success(base, fmt, task)}
        for band in FINE_TUNE_BANDS:
            tuned = out / f"tuned-{fmt}-{band.name.replace(',', '+')}-{FINE_TUNE.steps}steps"
            if not (tuned / "model.safetensors").exists():
                fine_tune(base, tuned, band, fmt, task)
            rows[f"fine-tuned on {band.name}"] = success(tuned, fmt, task)
        result = {"format": fmt, "spec": asdict(SPEC), "pretrain": asdict(PRETRAIN),
                  "fine_tune": {"replay_share": REPLAY_SHARE, **asdict(FINE_TUNE)},
                  "problems": PROBLEMS, "samples": SAMPLES, "success": rows,
                  "seconds": round(time.monotonic() - started, 1)}
        (out / f"scratchpad-{fmt}.json").write_text(json.dumps(result, indent=2) + "\n")
        names = [band.name for band in MEASURED_BANDS]
        print(f"\n{fmt}: sampled success (%), {PROBLEMS} sums x {SAMPLES} samples per band")
        print("| student | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for student, rates in rows.items():
            print(f"| {student} | " + " | ".join(f"{100 * rates[n]:.1f}" for n in names) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2 or any(f not in FORMATS for f in sys.argv[2:]):
        raise SystemExit(__doc__)
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    main(target, sys.argv[2:] or ["scratchpad"])

"""Issue 18, rung 2 (exploratory): a world whose hard problems are long chains of one step the
student knows only unreliably. Does practising short chains make the long ones solvable?

    bash run.sh python scripts/chain_probe.py OUT_DIR [counted|walk ...]

Every arithmetic format we tried failed the same way (RESULTS.md): the 1M-parameter model learns
each band or length as its own procedure, so no problem is a stepping stone for another. This
world asks for no new procedure at all. A hidden successor function `f` maps each of 26 letters to
the next letter of one 26-cycle; a question `g07=` asks for the walk of 7 steps of `f` from `g`.
Two formats (FORMATS):
- `counted`: the student writes one `letter count` item per step, then boxes the end:
  `g07 x06 m05 b04 ... q00 \\boxed{q}`. Every step reads only the item before it, at the same
  distance in every chain. Only the end letter is graded, so a wrong walk still ends right about
  one time in 26.
- `walk`: the student boxes the walk itself, one letter per step, the start included:
  `\\boxed{gxmbqrst}`, and the whole walk is graded. Each step is the letter after the one
  before it, with no count beside it; where to stop is learnt per length, and every length up
  to MAX_STEPS is in pretraining.
So a long walk is the short one's step repeated, not a new length.

The base model knows the step unreliably: its pretraining walks follow `f` at every letter except
NOISY_LETTERS, where the written successor is `f`'s only RIGHT_SHARE of the time and one of two
fixed wrong letters otherwise (each more often than the right one, so greedy decoding is wrong
there too). A long walk crosses several such letters, and its errors compound: the hard problems
are long walks the base model solves 0 times in many samples, although every chain length up to
MAX_STEPS was in its pretraining. Short walks through a noisy letter are right often enough for
RL to get a signal, and with true labels they teach exactly the steps the long walks miss: the
stepping stones, if sharpening a step carries over from one place in the walk to another.

It pretrains the base model, measures its sampled (temperature 1) and greedy success per chain
length over every start letter, then fine-tunes copies (supervised, no replay) on short walks
with true labels (an ideal teacher's stepping stones), on short walks with the base model's own
noisy labels (an untrained teacher's), and on long walks with true labels (what Hard-Only would
learn if it ever got a reward), and measures them again. Writes `chain.json` and prints the
tables.

Pure torch and transformers (Hugging Face sampling, no vLLM): an exploration to decide whether a
new world is worth building, not a product measurement.
"""

from __future__ import annotations

import json
import random
import string
import sys
import time
from dataclasses import asdict
from pathlib import Path

from arith_probe_lib import Schedule, group_success, load

from soar_orl.formats import extract_last_boxed
from soar_orl.tasks.walk import LETTERS, WalkWorld
from soar_orl.tasks.pretraining import train_and_save
from soar_orl.tiny_model import TinyLlamaSpec, make_tiny_llama

FORMATS = ("counted", "walk")


WORLD = WalkWorld()
SPEC = TinyLlamaSpec(hidden_size=128, intermediate_size=512, num_hidden_layers=4, max_position_embeddings=256)
PRETRAIN = Schedule(steps=1500, batch_size=64, lr=3e-3, warmup_steps=50)
FINE_TUNE = Schedule(steps=200, batch_size=64, lr=1e-3, warmup_steps=10)
SHORT, LONG = (1, 2), tuple(range(12, WORLD.max_steps + 1))
MEASURED_STEPS = (1, 2, 3, 4, 6, 8, 12, 16)
SAMPLES, MAX_TOKENS = 16, 4 * (WORLD.max_steps + 1) + 12


def question(start: str, steps: int) -> str:
    return f"{start}{steps:02d}="


def response(letters: str, fmt: str) -> str:
    if fmt == "walk":
        return f"\\boxed{{{letters}}}"
    steps = len(letters) - 1
    return " ".join(f"{letter}{steps - i:02d}" for i, letter in enumerate(letters)) + f" \\boxed{{{letters[-1]}}}"


def label(letters: str, fmt: str) -> str:
    """What a right box holds: the whole walk (`walk`) or its end (`counted`)."""
    return letters if fmt == "walk" else letters[-1]


def examples(rng: random.Random, count: int, lengths, true_labels: bool, fmt: str) -> list[tuple[str, str]]:
    rows = []
    for _ in range(count):
        start, steps = rng.choice(LETTERS), rng.choice(lengths)
        walk = WORLD.walk(start, steps, None if true_labels else rng)
        rows.append((question(start, steps), response(walk, fmt)))
    return rows


def pretrain(out: Path, fmt: str) -> None:
    make_tiny_llama(out, SPEC, chars=LETTERS + string.digits + " =\\{}box\n", seed=PRETRAIN.seed)
    tokenizer, model = load(out)
    lengths = range(1, WORLD.max_steps + 1)
    train_and_save(out, model, tokenizer, PRETRAIN,
                   lambda rng: [examples(rng, PRETRAIN.batch_size, lengths, False, fmt)],
                   random.Random(f"chain-pretrain:{PRETRAIN.seed}"),
                   {"format": fmt, "world": asdict(WORLD), "spec": asdict(SPEC), **asdict(PRETRAIN)},
                   f"pretrain {fmt}")


def fine_tune(base: Path, out: Path, lengths, true_labels: bool, fmt: str) -> None:
    tokenizer, model = load(base)
    tokenizer.save_pretrained(out)
    train_and_save(out, model, tokenizer, FINE_TUNE,
                   lambda rng: [examples(rng, FINE_TUNE.batch_size, lengths, true_labels, fmt)],
                   random.Random(f"chain-fine-tune:{lengths}:{true_labels}"),
                   {"format": fmt, "lengths": list(lengths), "true_labels": true_labels, **asdict(FINE_TUNE)},
                   f"fine-tune {fmt} {lengths} {'true' if true_labels else 'noisy'}")


def success(folder: Path, greedy: bool, fmt: str) -> dict[str, float]:
    """Per chain length, the share of right boxes over all 26 starts; and per kind of start
    letter, one step's success (the step the fine-tunes should sharpen)."""
    def asked(starts, steps):
        return [(question(s, steps), label(WORLD.walk(s, steps), fmt)) for s in starts]

    noisy = WORLD.noise()
    groups = {str(steps): asked(LETTERS, steps) for steps in MEASURED_STEPS}
    groups["1 step from a noisy letter"] = asked(noisy, 1)
    groups["1 step from a clean letter"] = asked([s for s in LETTERS if s not in noisy], 1)
    return group_success(folder, groups, lambda q: q, lambda text, _, right: extract_last_boxed(text) == right,
                         SAMPLES, MAX_TOKENS, greedy=greedy)


def main(out: Path, fmt: str) -> None:
    started = time.monotonic()
    base = out / f"base-{fmt}"
    if not (base / "model.safetensors").exists():
        pretrain(base, fmt)
    models = {"base": base}
    for name, lengths, true_labels in (("short walks, true labels", SHORT, True),
                                       ("short walks, noisy labels", SHORT, False),
                                       ("long walks, true labels", LONG, True)):
        tuned = out / f"tuned-{fmt}-{lengths[0]}-{lengths[-1]}-{'true' if true_labels else 'noisy'}-{FINE_TUNE.steps}"
        if not (tuned / "model.safetensors").exists():
            fine_tune(base, tuned, lengths, true_labels, fmt)
        models[name] = tuned
    rows = {name: {"sampled": success(folder, False, fmt), "greedy": success(folder, True, fmt)}
            for name, folder in models.items()}
    result = {"format": fmt, "world": asdict(WORLD), "successor": WORLD.successor(), "noise": WORLD.noise(),
              "spec": asdict(SPEC), "pretrain": asdict(PRETRAIN), "fine_tune": asdict(FINE_TUNE),
              "samples": SAMPLES, "success": rows, "seconds": round(time.monotonic() - started, 1)}
    (out / f"chain-{fmt}.json").write_text(json.dumps(result, indent=2) + "\n")
    columns = list(rows["base"]["sampled"])
    for mode in ("sampled", "greedy"):
        print(f"\n{fmt}, {mode} success (%), per walk length (steps) over the 26 start letters"
              + (f", {SAMPLES} samples each" if mode == "sampled" else "")
              + f"\n| model | {' | '.join(columns)} |\n|---|{'---:|' * len(columns)}")
        for name, by_mode in rows.items():
            print(f"| {name} | " + " | ".join(f"{100 * by_mode[mode][c]:.1f}" for c in columns) + " |")


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    for fmt in sys.argv[2:] or FORMATS:
        main(out_dir, fmt)

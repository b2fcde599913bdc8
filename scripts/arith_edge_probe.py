"""Issue 18, rung 2 (exploratory): a hard split just past the edge, and probe datasets for it.

    bash run.sh python scripts/arith_edge_probe.py OUT_DIR
    bash run.sh python scripts/arith_edge_probe.py --overflow OUT_DIR
    bash run.sh python scripts/arith_edge_probe.py --bands OUT_DIR

The built-in hard split (eval/arith_hard.py HARD_BANDS) is mostly 2+3 and 3+3-digit sums the base
model almost never solves. This one keeps a single band the base model solves about 6% of the
time per sample, 3+2 digits, drawn 2048 times and filtered to the sums it solved 0/64: past the
edge of its competence, but beside problems it sometimes solves. It writes to OUT_DIR:
- `split_hard_train.jsonl`, `split_hard_test.jsonl`, `hard_split.json`: a copy of the split
  (eval/arith_hard.py EDGE_SPLIT; a recipe names it `builtin:arith/edge_train` / `edge_test`);
- `measured.json`: MEASURE_PROBLEMS fresh 3+2 sums outside the split, each sampled MEASURE_SAMPLES
  times at temperature 1, with its carry pattern (which column carries, units first);
- probe datasets of meta.n = 16 true-labelled sums from `measured.json` (plus wrong-labelled twins):
  `stepping_stones` (success 10-60%, chosen as `soar probe-datasets` chooses them),
  `stones_carry` (success 10-60% and at least one carry, none into a fourth digit),
  `band_16` (sums drawn at random, whatever their success) and `band_16_wrong` (its labels with
  one digit changed), `stones_64` (64 sums at 10-60% success) and `band_64` (64 at random).
With `--overflow` it writes instead datasets of sums whose answer has one digit more than their
longest operand (the carry into a new column that 48 of the split's 174 train problems need and
the base model almost never writes), each measured the same way (`overflow_measured.json`):
`overflow_22` (2+2 sums, answer >= 100: the base model's thorough bands), `overflow_31` (3+1,
answer >= 1000) and `overflow_32` (3+2, answer >= 1000, none in the split).
With `--deep K OUT_DIR` it samples every problem of the split K more times and writes the ones
still never solved (`deep_train.jsonl`, `deep_test.jsonl`, `deep_measured.json`): a split whose
true success is lower, for a Hard-Only that sees fewer positives.
With `--bands OUT_DIR` it writes datasets for the built-in split (HARD_BANDS: 3+2, 2+3 and 3+3 sums,
mostly far beyond the base model) instead: meta.n = 16 true-labelled sums drawn at random from each
of BAND_SETS (none in that split), each measured the same way (`bands_measured.json`). They ask
which band's sums move a student on problems its own RLVR barely moves (RESULTS.md: Hard-Only
0.61% against the base model's 0.43% pass@1 at the large budget).
With `--by-kind SAMPLES.jsonl ...` (files `soar eval` writes for the edge or built-in split, gzipped
or not) it prints each file's correct samples by kind of problem: 4-digit answer, another carry, no
carry; with `--by-band SAMPLES.jsonl ...`, by band (3+2, 2+3, 3+3).
vLLM sampling on CPU is not bit-reproducible, so a second run picks other stones: RESULTS.md's
numbers come from the files committed in docs/probe/edge/.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import sys
from pathlib import Path

from soar_orl.eval.arith_hard import EDGE_SPLIT, HardSplitSettings, hard_pool, hard_split_dir
from soar_orl.eval.sampling import start_engine, stop_engine, success_counts
from soar_orl.eval.splits import SPLIT_FILES, SUMMARY_FILE
from soar_orl.formats import QAPair
from soar_orl.meta.arith_probe import select_stones, wrong_label
from soar_orl.meta.probe import write_dataset
from soar_orl.tasks.arith import ArithTask, Band, band_problems
from soar_orl.tasks.arith_model import base_model_dir
from soar_orl.tasks.problems import load_problems

(EDGE_BAND,) = EDGE_SPLIT.bands
MEASURE_PROBLEMS, MEASURE_SAMPLES, MEASURE_SEED = 512, 64, 11
STONE_SUCCESS = (0.10, 0.60)
N = 16


def carry_pattern(question: str) -> tuple[int, ...]:
    """Carry out of each column of a two-operand sum, units first: 287+65 -> (1, 1, 0)."""
    a, b = map(int, question.split("+"))
    pattern, carry = [], 0
    for _ in range(max(len(str(a)), len(str(b)))):
        carry = (a % 10 + b % 10 + carry) // 10
        pattern.append(carry)
        a, b = a // 10, b // 10
    return tuple(pattern)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    split = hard_split_dir(settings=EDGE_SPLIT)
    for name, file in SPLIT_FILES.items():
        shutil.copy(split / file, out / f"split_{name}.jsonl")
    shutil.copy(split / SUMMARY_FILE, out / SUMMARY_FILE)
    hard = {p.problem for name in SPLIT_FILES.values() for p in load_problems(str(split / name))}
    task = ArithTask()
    candidates = [p for p in band_problems(EDGE_BAND, MEASURE_PROBLEMS, MEASURE_SEED) if p.problem not in hard]
    llm = start_engine(base_model_dir(), seed=0)
    try:
        correct = success_counts(llm, task, candidates, MEASURE_SAMPLES, 1.0, 16)
    finally:
        stop_engine(llm)
    measured = [{"question": p.problem, "answer": p.answer, "success": correct[p.id] / MEASURE_SAMPLES,
                 "carries": carry_pattern(p.problem)} for p in candidates]
    (out / "measured.json").write_text(json.dumps(measured, indent=1) + "\n")

    low, high = STONE_SUCCESS
    in_range = [m for m in measured if low <= m["success"] <= high]
    with_carry = [m for m in in_range if any(m["carries"]) and not m["carries"][-1]]
    rng = random.Random("arith-edge-probe")
    band_16 = rng.sample(measured, N)
    pick = {
        "stepping_stones": [{"question": p.problem, "answer": p.answer}
                            for p in select_stones(candidates, correct, MEASURE_SAMPLES, N, hard, low, high)],
        "stones_carry": rng.sample(with_carry, N),
        "band_16": band_16,
        "band_16_wrong": [{"question": m["question"], "answer": wrong_label(m["answer"], rng)} for m in band_16],
        "stones_64": rng.sample(in_range, 4 * N),
        "band_64": rng.sample(measured, 4 * N),
    }
    for name, rows in pick.items():
        right = write_dataset(out / f"{name}.jsonl", [QAPair(r["question"], r["answer"]) for r in rows], task)
        print(f"{out / name}.jsonl: {len(rows)} rows, {right:.0%} right labels")
    summary = json.loads((out / SUMMARY_FILE).read_text())
    print(f"split: {summary['train']} train / {summary['test']} test; "
          f"band success {sum(m['success'] for m in measured) / len(measured):.1%}")


OVERFLOW_SETS = {"overflow_22": ((2, 2), 100), "overflow_31": ((3, 1), 1000), "overflow_32": ((3, 2), 1000)}
"""Dataset name -> (band, smallest answer): sums that carry into a new column."""


def overflow_datasets(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    split = hard_split_dir(settings=EDGE_SPLIT)
    hard = {p.problem for name in SPLIT_FILES.values() for p in load_problems(str(split / name))}
    task = ArithTask()
    chosen = {}
    for name, (digits, smallest) in OVERFLOW_SETS.items():
        # Distinct sums only: the 3+1 band has just 45 that reach 1000.
        pool = {p.problem: p for p in band_problems(Band(digits), 16384, MEASURE_SEED)
                if int(p.answer) >= smallest and p.problem not in hard}
        chosen[name] = random.Random(f"arith-overflow:{name}").sample(list(pool.values()), N)
    measure_and_write(out, "overflow_measured.json", chosen, task)


def measure_and_write(out: Path, measured_file: str, chosen: dict[str, list], task: ArithTask) -> None:
    """Sample each chosen sum MEASURE_SAMPLES times with the base model and write one dataset per name."""
    llm = start_engine(base_model_dir(), seed=0)
    try:
        correct = success_counts(llm, task, [p for rows in chosen.values() for p in rows], MEASURE_SAMPLES, 1.0, 16)
    finally:
        stop_engine(llm)
    measured = {name: [{"question": p.problem, "answer": p.answer, "success": correct[p.id] / MEASURE_SAMPLES}
                       for p in rows] for name, rows in chosen.items()}
    (out / measured_file).write_text(json.dumps(measured, indent=1) + "\n")
    for name, rows in chosen.items():
        write_dataset(out / f"{name}.jsonl", [QAPair(p.problem, p.answer) for p in rows], task)
        mean = sum(m["success"] for m in measured[name]) / N
        print(f"{out / name}.jsonl: {N} true-labelled sums, mean base success {mean:.1%}")


BAND_SETS = {"band_32": (3, 2), "band_23": (2, 3), "band_33": (3, 3), "band_13": (1, 3)}
"""Dataset name -> band of the random true-labelled sums `--bands` writes for the built-in split."""


def band_datasets(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    split = hard_split_dir()
    hard = {p.problem for name in SPLIT_FILES.values() for p in load_problems(str(split / name))}
    chosen = {}
    for name, digits in BAND_SETS.items():
        pool = {p.problem: p for p in band_problems(Band(digits), 4096, MEASURE_SEED) if p.problem not in hard}
        chosen[name] = random.Random(f"arith-bands:{name}").sample(list(pool.values()), N)
    measure_and_write(out, "bands_measured.json", chosen, ArithTask())


def problem_kind(question: str) -> str:
    pattern = carry_pattern(question)
    return "4-digit answer" if pattern[-1] else "carry" if any(pattern) else "no carry"


def problem_band(question: str) -> str:
    a, b = question.split("+")
    return f"{len(a)}+{len(b)}"


def correct_by(sample_files: list[Path], classify) -> None:
    """Each samples file's correct samples, tallied by `classify(question)`. The files are those
    `soar eval` writes (gzipped or not) for the edge split or the built-in split, of either
    answer order (a problem's id names the same sum in every world's pool)."""
    problems = {p.id: p.problem for settings in (EDGE_SPLIT, HardSplitSettings()) for p in hard_pool(settings)}
    for path in sample_files:
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        counts: dict[str, list[int]] = {}  # class -> [problems, samples, correct, solved]
        for line in text.splitlines():
            row = json.loads(line)
            tally = counts.setdefault(classify(problems[row["id"]]), [0, 0, 0, 0])
            right = sum(row["correct"])
            tally[0] += 1
            tally[1] += len(row["correct"])
            tally[2] += right
            tally[3] += right > 0
        print(path, "; ".join(f"{name}: {n} problems, {right} of {samples} samples correct "
                              f"({100 * right / samples:.2f}%), {solved} solved"
                              for name, (n, samples, right, solved) in sorted(counts.items())))


def deep_split(k: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    split = hard_split_dir(settings=EDGE_SPLIT)
    parts = {name: load_problems(str(split / file)) for name, file in SPLIT_FILES.items()}
    llm = start_engine(base_model_dir(), seed=1)  # not the split's seed: fresh samples
    try:
        correct = success_counts(llm, ArithTask(), [p for rows in parts.values() for p in rows], k, 1.0, 16)
    finally:
        stop_engine(llm)
    (out / "deep_measured.json").write_text(json.dumps(correct, indent=1) + "\n")
    for name, rows in parts.items():
        kept = [p for p in rows if correct[p.id] == 0]
        (out / f"deep_{name.removeprefix('hard_')}.jsonl").write_text("".join(
            json.dumps({"id": p.id, "problem": p.problem, "answer": p.answer, **p.metadata}) + "\n" for p in kept))
        print(f"{name}: {len(kept)} of {len(rows)} never solved in {k} more samples "
              f"({sum(correct[p.id] for p in rows)} correct of {k * len(rows)})")


if __name__ == "__main__":
    if sys.argv[1] == "--deep":
        deep_split(int(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] in ("--by-kind", "--by-band"):
        correct_by([Path(arg) for arg in sys.argv[2:]], problem_kind if sys.argv[1] == "--by-kind" else problem_band)
    elif sys.argv[1] == "--bands":
        band_datasets(Path(sys.argv[2]))
    elif sys.argv[1] == "--overflow":
        overflow_datasets(Path(sys.argv[2]))
    else:
        main(Path(sys.argv[1]))

"""The walk world's base teacher as the grounded reward sees it: several datasets of its own pairs.

    bash run.sh python scripts/walk_teacher_sets.py OUT_DIR [SETS] [MODEL]

The teacher's RLOO learns from the differences between the rewards of its g datasets. This
samples the teacher (default `builtin:walk`) with the walk quickstart's teacher settings
(temperature 1, 80 tokens) and writes SETS (default 8) datasets of 16 valid pairs, in sampling
order, as probe datasets (`teacher_<i>.jsonl`, meta/probe.write_dataset), printing per set the
share of right labels and how many pairs are 1-2 step walks through a noisy letter with the right
walk (the probe's stepping stones). Then `soar probe --datasets OUT_DIR/teacher_*.jsonl` gives
the reward of each.
"""

from __future__ import annotations

import sys
from pathlib import Path

from soar_orl.eval.sampling import generate, start_engine, stop_engine
from soar_orl.formats import QAPair
from soar_orl.meta.probe import write_dataset
from soar_orl.resolve import resolve_model
from soar_orl.tasks.walk import WalkTask, parse_question

N, MAX_TOKENS = 16, 80


def is_right_stone(task: WalkTask, pair: QAPair) -> bool:
    parsed = parse_question(pair.question)
    if parsed is None or parsed[1] > 2:
        return False
    return task.world.noisy_crossings(*parsed) > 0 and pair.answer == task.reference_answer(pair.question)


def main(out: Path, sets: int, model: str) -> None:
    task = WalkTask()
    llm = start_engine(resolve_model(model), seed=0)
    try:
        texts = generate(llm, [task.teacher_prompt()], 2 * sets * N, 1.0, MAX_TOKENS)[0]
    finally:
        stop_engine(llm)
    pairs = [p for p in map(task.parse_teacher_output, texts) if isinstance(p, QAPair)]
    if len(pairs) < sets * N:
        sys.exit(f"only {len(pairs)} valid pairs in {len(texts)} samples, {sets * N} needed")
    out.mkdir(parents=True, exist_ok=True)
    for i in range(sets):
        chunk = pairs[i * N:(i + 1) * N]
        right = write_dataset(out / f"teacher_{i}.jsonl", chunk, task)
        stones = sum(is_right_stone(task, p) for p in chunk)
        print(f"{out}/teacher_{i}.jsonl: {right:.0%} right labels, {stones} right stepping stones")


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 4:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 8,
         sys.argv[3] if len(sys.argv) > 3 else "builtin:walk")

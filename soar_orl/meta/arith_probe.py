"""The arithmetic world's probe datasets (`soar probe-datasets RECIPE --out DIR`, then `soar probe`).

Five datasets of meta.n (question, answer) rows, the candidates an ideal teacher could write:
- `hard_train`: real hard train problems (0/k for the base model) with their true sums;
- `stepping_stones`: sums the base student solves STONE_SUCCESS of the time at its rollout
  temperature, measured one by one on MEASURE_SAMPLES samples of MEASURE_PROBLEMS fresh sums of
  every edge band: just inside its competence, where an RLOO group sees right and wrong answers;
  true sums. (Whole bands do not qualify: measured at temperature 1 the base model solves its
  best edge band, 3+1 digits, 7.9% of the time and its hardest easy band, 2+2, 86.5%; nothing lies
  between, so the stones are single problems, not a band.)
- `easy`: fresh sums of the pretrained easy bands (86-98% solved); true sums;
- `teacher_samples`: the base teacher's own valid pairs, sampled with the task's teacher prompt at
  the recipe's teacher temperature and token budget, labels as written (mostly wrong, see
  RESULTS.md);
- `stones_wrong_labels`: the stepping stones with one digit of each sum changed.
Fresh sums never repeat a hard split problem. `manifest.json` records the band measurements, the
bands chosen and the share of right answers in every file.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from soar_orl.config import SoarConfig
from soar_orl.formats import QAPair
from soar_orl.meta.probe import write_dataset
from soar_orl.tasks.arith import Band, band_problems
from soar_orl.tasks.arith_model import EASY_BANDS, EDGE_BANDS
from soar_orl.tasks.base import Problem

# Sampled success rates (temperature 1) that make a problem a stepping stone: an RLOO group of 4
# then holds a right answer in 34-97% of the groups, and a wrong one too.
STONE_SUCCESS = (0.10, 0.60)
# Measurement: problems per band and samples per problem.
MEASURE_PROBLEMS, MEASURE_SAMPLES = 128, 16
# Seeds of the measurement problems and of the datasets' fresh problems: apart from the hard
# pool's (HardSplitSettings.seed = 0) and the accuracy report's (REPORT_SEED = 1).
MEASURE_SEED, DATASET_SEED = 7, 8
MANIFEST = "manifest.json"


def select_stones(problems: Sequence[Problem], correct: dict[str, int], samples: int, count: int,
                  exclude: Iterable[str], low: float = STONE_SUCCESS[0], high: float = STONE_SUCCESS[1]) -> list[Problem]:
    """`count` problems whose measured success (correct / samples) lies in [low, high], none in
    `exclude`, taken round-robin over their bands (so one band does not fill the set). When fewer
    qualify, the rest are the most-solved problems below `low` (the manifest lists every stone's
    success, so a reader sees it)."""
    excluded, by_band, below = set(exclude), {}, []
    for problem in problems:
        if problem.problem in excluded:
            continue
        excluded.add(problem.problem)
        rate = correct[problem.id] / samples
        if low <= rate <= high:
            by_band.setdefault(problem.metadata["band"], []).append(problem)
        elif 0 < rate < low:
            below.append(problem)
    chosen = [p for rank in itertools.zip_longest(*by_band.values()) for p in rank if p is not None][:count]
    chosen += sorted(below, key=lambda p: -correct[p.id])[: count - len(chosen)]
    if len(chosen) < count:
        raise ValueError(f"only {len(chosen)} problems were ever solved, {count} stepping stones needed")
    return chosen


def fresh_sums(bands: Sequence[Band], count: int, seed: int, exclude: Iterable[str]) -> list[QAPair]:
    """`count` distinct sums drawn round-robin from `bands`, none of them in `exclude`."""
    if not bands:
        raise ValueError("fresh_sums needs at least one band")
    excluded, pairs, index = set(exclude), [], 0
    while len(pairs) < count:
        for band in bands:
            problem = band_problems(band, 1, seed, start=index)[0]
            if problem.problem not in excluded and len(pairs) < count:
                excluded.add(problem.problem)
                pairs.append(QAPair(problem.problem, problem.answer))
        index += 1
        if index > 100 * count + 1000:
            raise ValueError(f"bands {[b.name for b in bands]} hold fewer than {count} new sums")
    return pairs


def wrong_label(answer: str, rng: random.Random) -> str:
    """`answer` (a non-negative integer) with one digit changed: a near miss, never the true sum,
    no leading zero."""
    digits = list(answer)
    position = rng.randrange(len(digits))
    choices = [d for d in "0123456789" if d != digits[position] and not (d == "0" and position == 0 and len(digits) > 1)]
    digits[position] = rng.choice(choices)
    return "".join(digits)


def write_probe_datasets(cfg: SoarConfig, out_dir: Path) -> str:
    """Measure the base student's bands, write the five datasets and the manifest; returns a summary."""
    from soar_orl.eval.sampling import generate, start_engine, stop_engine, success_counts
    from soar_orl.resolve import resolve_model, resolve_problems
    from soar_orl.tasks import build_task

    n, task = cfg.meta.n, build_task(cfg.data.task)
    hard_train = resolve_problems(cfg.data.hard_train)
    hard_test = resolve_problems(cfg.data.hard_test)
    hard_expressions = {p.problem for p in [*hard_train, *hard_test]}
    llm = start_engine(resolve_model(cfg.model.student), cfg.model.dtype, cfg.model.max_model_len, seed=cfg.run.seed)
    try:
        measured = {band: band_problems(band, MEASURE_PROBLEMS, MEASURE_SEED) for band in [*EASY_BANDS, *EDGE_BANDS]}
        correct = success_counts(llm, task, [p for ps in measured.values() for p in ps], MEASURE_SAMPLES,
                                 cfg.student.temperature, cfg.student.max_new_tokens)
        texts = generate(llm, [task.teacher_prompt()], 8 * n, cfg.teacher.temperature, cfg.teacher.max_new_tokens)[0]
    finally:
        stop_engine(llm)
    success = {band.name: sum(correct[p.id] for p in ps) / (len(ps) * MEASURE_SAMPLES) for band, ps in measured.items()}
    teacher_pairs = [pair for pair in map(task.parse_teacher_output, texts) if isinstance(pair, QAPair)][:n]
    if len(teacher_pairs) < n:
        raise RuntimeError(f"the base teacher wrote {len(teacher_pairs)} valid pairs in {len(texts)} samples, {n} needed")
    edge = [p for band in EDGE_BANDS for p in measured[band]]
    stones = [QAPair(p.problem, p.answer) for p in select_stones(edge, correct, MEASURE_SAMPLES, n, hard_expressions)]
    rng = random.Random(f"{cfg.run.seed}/probe-datasets")
    datasets = {
        "hard_train": [QAPair(p.problem, p.answer) for p in rng.sample(hard_train, n)],
        "stepping_stones": stones,
        "easy": fresh_sums(EASY_BANDS, n, DATASET_SEED, hard_expressions),
        "teacher_samples": teacher_pairs,
        "stones_wrong_labels": [QAPair(p.question, wrong_label(p.answer, rng)) for p in stones],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    right = {name: write_dataset(out_dir / f"{name}.jsonl", pairs, task) for name, pairs in datasets.items()}
    manifest = {
        "n": n, "student": cfg.model.student, "hard_train": cfg.data.hard_train,
        "band_success": success, "measure": {"problems": MEASURE_PROBLEMS, "samples": MEASURE_SAMPLES,
                                             "temperature": cfg.student.temperature},
        "stepping_stones": [{"question": p.question, "band": next(q.metadata["band"] for q in edge if q.problem == p.question),
                             "success": next(correct[q.id] for q in edge if q.problem == p.question) / MEASURE_SAMPLES}
                            for p in stones],
        "right_labels": right,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    lines = [f"sampled success per band (temperature {cfg.student.temperature:g}, {MEASURE_PROBLEMS} problems x "
             f"{MEASURE_SAMPLES} samples):"]
    lines += [f"  {name:<5} {rate:.1%}" for name, rate in success.items()]
    lines.append("stepping stones (band: success): " + ", ".join(f"{s['band']}: {s['success']:.0%}" for s in manifest["stepping_stones"]))
    lines += [f"{out_dir / (name + '.jsonl')}: {n} rows, {share:.0%} right labels" for name, share in right.items()]
    return "\n".join(lines)

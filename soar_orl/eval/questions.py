"""`soar questions RUN_DIR`: diversity and quality of the questions a teacher wrote in a run.

Per outer step and over the whole run, from `teacher_samples/step_N.jsonl` (valid samples only),
and separately for the promoted questions (PQ, `promoted_questions.jsonl`), the set the paper
analyses (it finds only 32.8% of PQ answers correct):
- Vendi score (eval/vendi.py; character n-gram TF-IDF, so compare runs with each other, not with
  the paper's embedding-based values);
- duplicate rate: the share of questions that repeat an earlier question of the same set, after
  whitespace and case are normalised;
- answer accuracy: the share of pairs whose answer is the true one, where the task computes true
  answers exactly (arith; Task.reference_answer), else absent;
- answer agreement: the share of questions whose teacher answer equals the majority answer of a
  fresh solver (`--solver`, default the run's base student) over m samples. This is a cheap proxy
  for correctness and nothing more: a solver that is wrong the same way as the teacher agrees, and
  a question the solver cannot do counts as disagreeing even when the teacher is right.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from soar_orl.eval.vendi import vendi_score
from soar_orl.files import atomic_write_text, read_jsonl
from soar_orl.formats import QAPair, extract_last_boxed
from soar_orl.tasks.base import Outcome, Task

VENDI_MAX_ITEMS = 512  # the kernel is N x N: subsample larger sets (seeded)


def normalise(question: str) -> str:
    return re.sub(r"\s+", " ", question.lower()).strip()


def duplicate_rate(questions: Sequence[str]) -> float:
    """Share of questions equal (normalised) to an earlier one in the list."""
    if not questions:
        raise ValueError("need at least one question")
    return 1.0 - len({normalise(q) for q in questions}) / len(questions)


def majority_answer(responses: Sequence[str]) -> str | None:
    """The most frequent boxed answer among responses (ties: the first seen); None if none boxed."""
    boxed = [extract_last_boxed(response) for response in responses]
    counts = Counter(answer for answer in boxed if answer is not None)
    return max(counts, key=counts.get) if counts else None


def vendi_of(questions: Sequence[str], seed: int = 0) -> float:
    if len(questions) > VENDI_MAX_ITEMS:
        questions = random.Random(seed).sample(list(questions), VENDI_MAX_ITEMS)
    return vendi_score(questions)


def promoted_pairs(run_dir: Path) -> list[QAPair]:
    """Every (question, answer) pair of the PQ archive, in promotion order."""
    rows = read_jsonl(run_dir / "promoted_questions.jsonl")  # none before the first promotion
    return [QAPair(pair["question"], pair["answer"]) for row in rows for pair in row["pairs"]]


def pairs_by_step(run_dir: Path, task: Task) -> dict[int, list[QAPair]]:
    """The valid (question, answer) pairs of each step, re-parsed from the raw teacher samples."""
    steps = {}
    for path in sorted((run_dir / "teacher_samples").glob("step_*.jsonl"), key=lambda p: int(p.stem.split("_")[1])):
        rows = read_jsonl(path)
        pairs = [task.parse_teacher_output(row["text"]) for row in rows if row["valid"]]
        steps[int(path.stem.split("_")[1])] = [pair for pair in pairs if isinstance(pair, QAPair)]
    return steps


def answer_accuracy(task: Task, pairs: Sequence[QAPair]) -> float | None:
    """Share of pairs whose answer is the true one (a question the task cannot solve counts as
    wrong); None when the task computes no true answers at all (math)."""
    references = [task.reference_answer(pair.question) for pair in pairs]
    if all(reference is None for reference in references):
        return None
    right = sum(reference is not None and task.grade(task.response_for(reference), pair.answer).outcome is Outcome.CORRECT
                for reference, pair in zip(references, pairs, strict=True))
    return right / len(pairs)


def kind_counts(task: Task, pairs: Sequence[QAPair]) -> dict[str, list[int]]:
    """[written, right answers] per difficulty band (Task.question_kind) of the well-formed
    questions, bands sorted by name; empty for tasks without bands."""
    counts: dict[str, list[int]] = {}
    for pair in pairs:
        kind = task.question_kind(pair.question)
        if kind is not None:
            entry = counts.setdefault(kind, [0, 0])
            entry[0] += 1
            entry[1] += answer_accuracy(task, [pair]) == 1.0
    return dict(sorted(counts.items()))


def summarise(task: Task, pairs: Sequence[QAPair]) -> dict:
    """Size, Vendi score, duplicate rate, (when the task knows true answers) answer accuracy, and
    (when it has bands) the questions and right answers per band, of a non-empty set of questions."""
    questions = [p.question for p in pairs]
    return {"questions": len(questions), "vendi": vendi_of(questions), "duplicate_rate": duplicate_rate(questions),
            "answer_accuracy": answer_accuracy(task, pairs), "kinds": kind_counts(task, pairs)}


def diversity(task: Task, steps: dict[int, list[QAPair]]) -> dict:
    return {"per_step": {step: summarise(task, pairs) for step, pairs in steps.items() if pairs},
            "run": summarise(task, [p for pairs in steps.values() for p in pairs])}


def answer_accuracy_text(summary: dict) -> str:
    """A summary's answer accuracy in %, or "-" when there is none (math, or no summary)."""
    return "-" if summary.get("answer_accuracy") is None else f"{100 * summary['answer_accuracy']:.1f}%"


def agreement(task: Task, pairs: Sequence[QAPair], responses: Sequence[Sequence[str]]) -> float:
    """Share of pairs whose answer the solver's majority answer verifies against."""
    agree = 0
    for pair, samples in zip(pairs, responses, strict=True):
        majority = majority_answer(samples)
        if majority is not None:
            agree += task.grade(f"\\boxed{{{majority}}}", pair.answer).outcome is Outcome.CORRECT
    return agree / len(pairs)


def format_questions_report(result: dict) -> str:
    run = result["diversity"]["run"]
    lines = [f"# Questions of {result['run_dir']}", "",
             f"{run['questions']} valid questions: Vendi {run['vendi']:.2f}, duplicates {100 * run['duplicate_rate']:.1f}%, "
             f"right answers {answer_accuracy_text(run)}"]
    if "agreement" in result:
        a = result["agreement"]
        lines.append(f"answer agreement with {a['solver']} (majority of {a['samples']} samples, {a['questions']} "
                     f"questions): {100 * a['share']:.1f}% (a proxy for correctness, see soar_orl/eval/questions.py)")
    promoted = result.get("promoted")
    if promoted:
        lines += ["", f"{promoted['questions']} promoted questions (PQ): Vendi {promoted['vendi']:.2f}, "
                      f"duplicates {100 * promoted['duplicate_rate']:.1f}%, right answers {answer_accuracy_text(promoted)}"]
        if "agreement" in promoted:
            lines.append(f"PQ answer agreement with the same solver ({promoted['agreement']['questions']} questions): "
                         f"{100 * promoted['agreement']['share']:.1f}% (the same proxy)")
    else:
        lines += ["", "no promoted questions in this run"]
    lines += ["", "| step | questions | Vendi | duplicates | right answers |", "|---:|---:|---:|---:|---:|"]
    for step, row in result["diversity"]["per_step"].items():
        lines.append(f"| {step} | {row['questions']} | {row['vendi']:.2f} | {100 * row['duplicate_rate']:.1f}% | "
                     f"{answer_accuracy_text(row)} |")
    sets = [("all generated", run), *([("promoted", promoted)] if promoted else [])]
    kinds = sorted({kind for _, summary in sets for kind in summary.get("kinds", {})}, key=_kind_order)
    if kinds:
        lines += ["", "Questions per band (written / right answers):", "",
                  "| band | " + " | ".join(name for name, _ in sets) + " |", "|---|" + "---:|" * len(sets)]
        for kind in kinds:
            cells = [summary["kinds"].get(kind, [0, 0]) for _, summary in sets]
            lines.append(f"| {kind} | " + " | ".join(f"{n} / {right}" for n, right in cells) + " |")
    return "\n".join(lines) + "\n"


def _kind_order(kind: str) -> list:
    """Bands in numeric order (`2 noisy` before `10 noisy`, `3,2` before `3,10`)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", kind)]


def write_questions_report(run_dir: Path, result: dict) -> Path:
    out = run_dir / "eval"
    atomic_write_text(out / "questions.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "questions.md", format_questions_report(result))
    return out / "questions.md"

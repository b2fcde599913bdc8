"""Problem files: every problem set of a recipe is read here, whatever its task.

Loading: local JSONL (also gzipped, `.jsonl.gz`) or Parquet files in the format of the
repository's `data/` folder (`id`, `problem`, `answer` = the final short answer without a box;
every other field becomes metadata; see data/README.md), or a Hugging Face dataset name through
`datasets.load_dataset` (imported only then). Sources that name their fields differently say so
with `ProblemFields`, e.g. MATH-500 on the hub:
`load_problems("HuggingFaceH4/MATH-500", ProblemFields(id="unique_id"))`. A bad row is an error
that names the file and line: a silently skipped problem would change the hard split.
`write_problems` writes the same format (the fail@k splits of `soar filter` and of the arithmetic
world).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soar_orl.files import atomic_write_text
from soar_orl.formats import extract_last_boxed
from soar_orl.tasks.base import Problem


class ProblemFormatError(ValueError):
    """A source row that cannot become a Problem; the message starts with `file:line`."""


@dataclass(frozen=True)
class ProblemFields:
    """Which fields of a source row hold the id, problem and answer."""

    id: str | None = "id"  # None: the source has no id; use the 0-based row number
    problem: str = "problem"
    answer: str = "answer"
    answer_is_solution: bool = False  # the answer field is a full solution: take its last box


def load_problems(
    source: str | Path, fields: ProblemFields | None = None, split: str = "test"
) -> list[Problem]:
    """Problems from a `.jsonl` / `.jsonl.gz` / `.parquet` file, else a Hugging Face dataset (`split`)."""
    fields = fields or ProblemFields()
    name = Path(source).name
    if name.endswith((".jsonl", ".jsonl.gz")):
        rows = _jsonl_rows(Path(source))
    elif name.endswith(".parquet"):
        rows = _parquet_rows(Path(source))
    else:
        rows = _hub_rows(str(source), split)
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    for row_number, (where, row) in enumerate(rows):
        problem = _to_problem(row, where, row_number, fields)
        if problem.id in first_seen:
            raise ProblemFormatError(
                f"{where}: duplicate id {problem.id!r} (first at {first_seen[problem.id]})"
            )
        first_seen[problem.id] = where
        problems.append(problem)
    return problems


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as error:
                raise ProblemFormatError(f"{where}: invalid JSON ({error})") from None


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow") from error
    for index, row in enumerate(pq.read_table(path).to_pylist()):
        yield f"{path}: row {index}", row


def _hub_rows(name: str, split: str) -> Iterator[tuple[str, Any]]:
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            f"{name!r} is not a .jsonl/.parquet file, so it is read as a Hugging Face dataset, "
            "which needs the `datasets` package: pip install datasets"
        ) from error
    for index, row in enumerate(datasets.load_dataset(name, split=split)):
        yield f"{name}[{split}]: row {index}", row


def _to_problem(row: Any, where: str, row_number: int, fields: ProblemFields) -> Problem:
    if not isinstance(row, dict):
        raise ProblemFormatError(f"{where}: expected a JSON object, got {type(row).__name__}")

    def text(name: str) -> str:
        if name not in row:
            raise ProblemFormatError(f"{where}: missing field {name!r} (fields: {', '.join(map(str, row))})")
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ProblemFormatError(f"{where}: field {name!r} must be a string or number, got {value!r}")
        if not str(value).strip():
            raise ProblemFormatError(f"{where}: field {name!r} is empty")
        return str(value)

    answer = text(fields.answer)
    if fields.answer_is_solution:
        boxed = extract_last_boxed(answer)
        if boxed is None:
            raise ProblemFormatError(f"{where}: field {fields.answer!r} has no \\boxed{{...}} answer")
        answer = boxed
    used = {fields.id, fields.problem, fields.answer}
    return Problem(
        id=str(row_number) if fields.id is None else text(fields.id),
        problem=text(fields.problem),
        answer=answer,
        metadata={key: value for key, value in row.items() if key not in used},
    )


def write_problems(path: Path, problems: Iterable[Problem]) -> None:
    """Write problems as JSONL rows that `load_problems` reads back (metadata as extra fields)."""
    rows = ({"id": p.id, "problem": p.problem, "answer": p.answer, **p.metadata} for p in problems)
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))

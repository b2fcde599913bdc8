"""The run directory: one layout for every variant, so runs compare directly.

    RUN_DIR/
      config.yaml                  resolved config
      metrics.jsonl                one line per outer step (namespaced keys: teacher/, reward/, ...)
      events.out.tfevents.*        TensorBoard (logging.tensorboard)
      promoted_questions.jsonl     the PQ archive, one promoted dataset per line
      teacher_samples/step_N.jsonl every teacher sample of step N, valid or not, with its reward
      checkpoints/                 loop_state.json, baseline_student.safetensors, teacher/ (HF)

Files that a resume reads are written atomically (temp file + rename), so a kill mid-write
leaves the previous version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from soar_orl.config import SoarConfig, dump_config


class RunDirError(RuntimeError):
    pass


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file; none if it does not exist (yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunDir:
    def __init__(self, cfg: SoarConfig) -> None:
        self.path = Path(cfg.run.output_dir) / cfg.run.name
        self.checkpoints = self.path / "checkpoints"
        if self.path.exists() and any(self.path.iterdir()):
            if cfg.run.overwrite:
                shutil.rmtree(self.path)
            elif not cfg.run.resume:
                raise RunDirError(
                    f"run directory {self.path} exists; pass run.resume=true to continue it or "
                    "run.overwrite=true to start over"
                )
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "teacher_samples").mkdir(exist_ok=True)
        atomic_write_text(self.path / "config.yaml", dump_config(cfg))

    # ------------------------------------------------------------------ per-step records

    def append_jsonl(self, name: str, row: dict[str, Any]) -> None:
        with open(self.path / name, "a") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def write_teacher_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        atomic_write_text(self.path / "teacher_samples" / f"step_{step}.jsonl", text)

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.path / name)

    def truncate_jsonl(self, name: str, keep_steps_below: int) -> None:
        """On resume, drop lines of steps that the checkpoint does not cover (they are redone)."""
        rows = [row for row in self.read_jsonl(name) if row.get("step", -1) < keep_steps_below]
        atomic_write_text(self.path / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    # ------------------------------------------------------------------ checkpoints

    def save_loop_state(self, state: dict[str, Any]) -> None:
        atomic_write_text(self.checkpoints / "loop_state.json", json.dumps(state, indent=1))

    def load_loop_state(self) -> dict[str, Any] | None:
        path = self.checkpoints / "loop_state.json"
        return json.loads(path.read_text()) if path.exists() else None

    def save_baseline(self, state_dict) -> Path:
        from safetensors.torch import save_file

        path = self.checkpoints / "baseline_student.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(tmp))
        os.replace(tmp, path)
        return path

    def load_baseline(self):
        from safetensors.torch import load_file

        path = self.checkpoints / "baseline_student.safetensors"
        return load_file(str(path)) if path.exists() else None

    @property
    def teacher_dir(self) -> Path:
        return self.checkpoints / "teacher"

    @property
    def teacher_staging_dir(self) -> Path:
        """The teacher trainer saves here; publish_teacher then swaps it in whole."""
        return self.checkpoints / "teacher.staging"

    @property
    def teacher_optimizer_dir(self) -> Path:
        """DeepSpeed checkpoints of the teacher (weights, optimizer, LR schedule), for resume."""
        return self.checkpoints / "teacher_optimizer"

    def publish_teacher(self) -> None:
        """Swap the staged teacher in: copy it whole beside the published one, then two renames.
        A kill between the renames leaves teacher.old, which latest_teacher() falls back to."""
        new, old = self.checkpoints / "teacher.new", self.checkpoints / "teacher.old"
        for leftover in (new, old):
            if leftover.exists():
                shutil.rmtree(leftover)
        shutil.copytree(self.teacher_staging_dir, new)
        if self.teacher_dir.exists():
            os.replace(self.teacher_dir, old)
        os.replace(new, self.teacher_dir)
        if old.exists():
            shutil.rmtree(old)

    def latest_teacher(self) -> Path | None:
        for candidate in (self.teacher_dir, self.checkpoints / "teacher.old"):
            if (candidate / "config.json").exists():
                return candidate
        return None

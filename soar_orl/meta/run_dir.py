"""The run directory and the run state: one layout for every variant, and one checkpoint unit.

    RUN_DIR/
      config.yaml                  resolved config (a resume refuses one that changed, see below)
      metrics.jsonl                one line per outer step (namespaced keys: teacher/, reward/, ...)
      events.out.tfevents.*        TensorBoard (logging.tensorboard)
      promoted_questions.jsonl     the PQ archive, one promoted dataset per line
      teacher_samples/step_N.jsonl every teacher sample of step N, valid or not, with its reward
      checkpoints/                 the last committed RunState, swapped in whole:
        run_state.json               next outer step, promotion tracker + PQ archive, parts' steps
        baseline_student/            the baseline student, an HF folder (after the first promotion)
        teacher/                     the teacher, an HF folder (modes that train it)
      teacher_optimizer/           the teacher's DeepSpeed checkpoints (weights, Adam moments, LR
                                   schedule) by tag; run_state.json names the one that goes with it

How a state is committed (`RunDir.commit`): every part is written into `checkpoints.next/`, the
teacher by its own trainer actors, then the baseline student, then `run_state.json`, last and
atomically: that write is the commit. The directory is then swapped in by two renames
(checkpoints -> checkpoints.old, checkpoints.next -> checkpoints). A resume first finishes a swap
that a kill interrupted, so it always continues from the last state whose run_state.json was
written, with every part from that state's step. The per-step records (metrics, promoted
questions, teacher samples) are appended as steps finish; a resume drops the rows of steps
after the committed state, which are redone.

Files that a resume reads are written atomically (temp file + rename), so a kill mid-write
leaves the previous version.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml

from soar_orl.config import ConfigError, SoarConfig, config_to_dict, dump_config, validate_config
from soar_orl.files import atomic_write_text, read_jsonl
from soar_orl.meta.promotion import PromotionTracker, StateMismatchError, key_differences

log = logging.getLogger("soar")

STATE_FILE = "run_state.json"
STATE_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"

# Settings a resume may change, because they change neither what the committed state means nor
# how the remaining steps compute. Every other difference from the saved config.yaml is refused.
SAFE_ON_RESUME = (
    "run.resume",  # how this invocation treats the directory
    "run.overwrite",
    "run.output_dir",  # where the run directory is: a run may be moved
    "meta.outer_steps",  # extend or shorten the run (the teacher's LR schedule spans the new total)
    "meta.checkpoint_every",  # when states are committed, not what they hold
    "pools.job_timeout_s",  # fault handling of student jobs
    "pools.job_retries",
    "logging.*",
    "evaluation.*",  # read only after the loop, by the final comparison
)


class RunDirError(RuntimeError):
    pass


class RunStateMismatch(ValueError):
    """A committed run state that does not fit this run; the message lists every difference."""


def baseline_student_dir(run_path: Path) -> Path | None:
    """The run's (last committed) baseline student as an HF folder, or None if nothing was promoted."""
    folder = Path(run_path) / "checkpoints" / "baseline_student"
    return folder if (folder / WEIGHTS_FILE).exists() else None


# ----------------------------------------------------------------------------- the run state


class RunState:
    """Everything a resumed run continues from, committed as one unit by `RunDir.commit`.

    - `next_step`: the outer step the run continues with;
    - `tracker`: promotion tracker with its moving average and the PQ archive;
    - `baseline_step`: the step whose promotion made the current baseline student (None: the
      base model); its weights are `new_baseline` until committed, then checkpoints/baseline_student;
    - `teacher_tag`: the teacher's DeepSpeed checkpoint saved with this state.
    """

    def __init__(self, tracker: PromotionTracker, trains_teacher: bool) -> None:
        self.tracker = tracker
        self.trains_teacher = trains_teacher
        self.next_step = 0
        self.baseline_step: int | None = None
        self.new_baseline: Mapping[str, Any] | None = None  # promoted weights not yet on disk

    @property
    def teacher_tag(self) -> str | None:
        """The tag of the teacher checkpoint saved with this state."""
        return _teacher_tag(self.next_step, self.trains_teacher)

    def promote(self, step: int, weights: Mapping[str, Any]) -> None:
        self.baseline_step = step
        self.new_baseline = weights

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON; the weights are the HF folders beside it."""
        return {
            "format": STATE_FORMAT,
            "next_step": self.next_step,
            "baseline_step": self.baseline_step,
            "teacher_tag": self.teacher_tag,
            "promotion": self.tracker.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a committed state; refuse (listing every difference) one whose parts disagree
        with each other or with this run. Nothing changes on refusal."""
        problems = key_differences("run state", set(self.state_dict()), state)
        if not isinstance(state, Mapping):
            raise RunStateMismatch(problems[0])
        if problems:
            raise RunStateMismatch("committed run state does not fit this run:\n- " + "\n- ".join(problems))
        if state["format"] != STATE_FORMAT:
            problems.append(f"format: this code reads {STATE_FORMAT}, the state has {state['format']!r}")
        tracker = PromotionTracker(self.tracker.meta)
        try:
            tracker.load_state_dict(state["promotion"])
        except StateMismatchError as err:
            problems.append(str(err))
        next_step = state["next_step"]
        promotion = state["promotion"] if isinstance(state["promotion"], Mapping) else {}
        if not isinstance(next_step, int) or next_step < 0:
            problems.append(f"next_step: expected an integer >= 0, found {next_step!r}")
        else:
            # The parts must come from the same step: the tracker has seen every step before
            # next_step, the baseline is its last promotion, the teacher tag is next_step's.
            last_step = promotion.get("last_step")
            if last_step != (next_step - 1 if next_step else None):
                problems.append(f"promotion.last_step: {last_step!r}, but next_step is {next_step}")
            archive = promotion.get("archive") or []
            last_promotion = archive[-1].get("step") if archive and isinstance(archive[-1], Mapping) else None
            if state["baseline_step"] != last_promotion:
                problems.append(f"baseline_step: {state['baseline_step']!r}, but the last promotion in the "
                                f"archive is at step {last_promotion!r}")
            expected_tag = _teacher_tag(next_step, self.trains_teacher)
            if state["teacher_tag"] != expected_tag:
                problems.append(f"teacher_tag: this run expects {expected_tag!r} (trains the teacher: "
                                f"{self.trains_teacher}), the state has {state['teacher_tag']!r}")
        if problems:
            raise RunStateMismatch("committed run state does not fit this run:\n- " + "\n- ".join(problems))
        self.tracker = tracker
        self.next_step = next_step
        self.baseline_step = state["baseline_step"]
        self.new_baseline = None


def _teacher_tag(next_step: int, trains_teacher: bool) -> str | None:
    """None before any step, and for a frozen teacher (nothing to save)."""
    return f"next_step_{next_step}" if trains_teacher and next_step else None


# ----------------------------------------------------------------------------- the directory


class RunDir:
    def __init__(self, cfg: SoarConfig) -> None:
        # Absolute, because actors on other nodes write here (teacher checkpoints, RLVR outputs).
        self.path = Path(cfg.run.output_dir).expanduser().absolute() / cfg.run.name
        self.checkpoints = self.path / "checkpoints"
        if self.path.exists() and any(self.path.iterdir()):
            if cfg.run.overwrite:
                shutil.rmtree(self.path)
            elif not cfg.run.resume:
                raise RunDirError(
                    f"run directory {self.path} exists; pass run.resume=true to continue it or "
                    "run.overwrite=true to start over"
                )
            else:
                self._refuse_changed_config(cfg)  # before anything in the directory changes
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "teacher_samples").mkdir(exist_ok=True)
        atomic_write_text(self.path / "config.yaml", dump_config(cfg))

    def _refuse_changed_config(self, cfg: SoarConfig) -> None:
        saved_file = self.path / "config.yaml"
        if not saved_file.exists():
            raise RunDirError(f"cannot resume {self.path}: it has no config.yaml (not a run directory?)")
        try:
            saved = validate_config(yaml.safe_load(saved_file.read_text()) or {}, str(saved_file))
        except ConfigError as err:
            raise RunDirError(f"cannot resume {self.path}: its saved config no longer loads:\n{err}") from None
        changes = config_changes(config_to_dict(saved), config_to_dict(cfg))
        if changes:
            raise RunDirError(
                f"run.resume=true refuses to continue {self.path} with a different config:\n  - "
                + "\n  - ".join(changes)
                + f"\nA resume may change only {', '.join(SAFE_ON_RESUME)}. "
                "Start a new run (another run.name) or pass run.overwrite=true to start over."
            )

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

    # ------------------------------------------------------------------ the committed state

    @property
    def teacher_dir(self) -> Path:
        """The committed teacher (HF folder)."""
        return self.checkpoints / "teacher"

    @property
    def baseline_dir(self) -> Path:
        """The committed baseline student (HF folder)."""
        return self.checkpoints / "baseline_student"

    @property
    def _next(self) -> Path:
        return self.path / "checkpoints.next"

    @property
    def _old(self) -> Path:
        return self.path / "checkpoints.old"

    @property
    def teacher_staging_dir(self) -> Path:
        """Where the teacher trainer saves its HF folder inside a commit (see `commit`)."""
        return self._next / "teacher"

    @property
    def teacher_optimizer_dir(self) -> Path:
        """DeepSpeed checkpoints of the teacher (weights, optimizer, LR schedule), by tag."""
        return self.path / "teacher_optimizer"

    @contextmanager
    def commit(self, state: RunState, student_model_dir: str | Path) -> Iterator[Path]:
        """Commit `state` whole or not at all:

            with run_dir.commit(state, student_dir):
                teacher.save(state.teacher_tag)  # its HF folder lands in run_dir.teacher_staging_dir

        The block writes the parts that other processes hold; on leaving it the baseline student
        (an HF folder with the config and tokenizer of `student_model_dir`) and run_state.json
        join them, and the new directory replaces checkpoints/. An exception anywhere before
        run_state.json is written leaves the committed state as it was."""
        _remove(self._next)
        self._next.mkdir(parents=True)
        yield self._next
        committed = self._read_state(self.checkpoints)
        target = self._next / "baseline_student"
        if state.new_baseline is not None:
            write_hf_folder(state.new_baseline, student_model_dir, target)
        elif state.baseline_step is not None:
            if committed is None or committed.get("baseline_step") != state.baseline_step:
                raise RunDirError(f"the baseline of step {state.baseline_step} is neither new nor committed")
            _link_tree(self.baseline_dir, target)  # unchanged since the last commit: no copy
        atomic_write_text(self._next / STATE_FILE, json.dumps(state.state_dict(), indent=1))  # the commit
        self._swap_in()
        state.new_baseline = None

    def resume(self, state: RunState) -> dict[str, Any] | None:
        """Load the last committed state into `state` and drop what came after it: the records of
        later steps and teacher checkpoints no state refers to. Returns the baseline student's
        weights (None: still the base model). With nothing committed the run starts over."""
        self._finish_swap()
        saved = self._read_state(self.checkpoints)
        if saved is not None:
            state.load_state_dict(saved)
            problems = []
            if state.baseline_step is not None and baseline_student_dir(self.path) is None:
                problems.append(f"{self.baseline_dir} is missing (the state records the promotion of step "
                                f"{state.baseline_step})")
            if state.teacher_tag is not None and not (self.teacher_dir / "config.json").exists():
                problems.append(f"{self.teacher_dir} is missing (the state records teacher tag "
                                f"{state.teacher_tag})")
            if problems:
                raise RunStateMismatch(f"committed run state in {self.checkpoints} is incomplete:\n- "
                                       + "\n- ".join(problems))
        # Uncommitted teacher checkpoints would count against OpenRLHF's ckpt.max_num and could
        # push the committed one out at the next save; they belong to steps that are redone.
        for group in self.teacher_optimizer_dir.glob("*"):
            for tag_dir in group.iterdir() if group.is_dir() else ():
                if tag_dir.is_dir() and tag_dir.name != state.teacher_tag:
                    shutil.rmtree(tag_dir)
        for name in ("metrics.jsonl", "promoted_questions.jsonl"):
            self.truncate_jsonl(name, keep_steps_below=state.next_step)
        for samples in (self.path / "teacher_samples").glob("step_*.jsonl"):
            if int(samples.stem.removeprefix("step_")) >= state.next_step:
                samples.unlink()
        log.info("resuming %s at step %d with %d promotions", self.path, state.next_step,
                 len(state.tracker.archive))
        return read_hf_weights(self.baseline_dir) if state.baseline_step is not None else None

    def _swap_in(self) -> None:
        _remove(self._old)
        if self.checkpoints.exists():
            os.replace(self.checkpoints, self._old)
        os.replace(self._next, self.checkpoints)
        _remove(self._old)

    def _finish_swap(self) -> None:
        """After a kill during a commit: the newest state whose run_state.json was written wins."""
        if self._read_state(self._next) is not None:
            self._swap_in()
        elif self._read_state(self.checkpoints) is None and self._read_state(self._old) is not None:
            _remove(self.checkpoints)
            os.replace(self._old, self.checkpoints)
        _remove(self._next)
        _remove(self._old)

    @staticmethod
    def _read_state(folder: Path) -> dict[str, Any] | None:
        path = folder / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else None


# ----------------------------------------------------------------------------- HF folders


def write_hf_folder(weights: Mapping[str, Any], like: str | Path, out: Path) -> Path:
    """`weights` as a Hugging Face folder that transformers and vLLM load directly: the config
    (its dtype set to the weights'), generation config and tokenizer of the model folder `like`,
    and the weights as one model.safetensors."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().contiguous() for name, tensor in weights.items()}
    config = AutoConfig.from_pretrained(like)
    config.dtype = next(iter(tensors.values())).dtype if tensors else torch.float32
    config.save_pretrained(out)
    try:
        GenerationConfig.from_pretrained(like).save_pretrained(out)
    except OSError:  # the model folder has none: transformers' defaults apply
        pass
    AutoTokenizer.from_pretrained(like).save_pretrained(out)
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    return out


def read_hf_weights(folder: Path) -> dict[str, Any]:
    """The state dict of a folder written by write_hf_folder."""
    from safetensors.torch import load_file

    return load_file(str(folder / WEIGHTS_FILE))


def config_changes(saved: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Every dotted key whose value differs between two resolved configs, as 'key: saved X, now Y',
    except the keys in SAFE_ON_RESUME."""
    before, after = _flatten(saved), _flatten(new)
    missing = object()
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, now = before.get(key, missing), after.get(key, missing)
        if old != now and not any(fnmatch(key, pattern) for pattern in SAFE_ON_RESUME):
            shown = ["<absent>" if value is missing else json.dumps(value) for value in (old, now)]
            changes.append(f"{key}: saved {shown[0]}, now {shown[1]}")
    return changes


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _link_tree(source: Path, target: Path) -> None:
    """A copy of `source` made of hard links (no bytes copied), or a real copy where the file
    system has none."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()

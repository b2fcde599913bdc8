"""The run directory: refusal to overwrite, resume truncation, atomic teacher publication."""

import json

import pytest
import torch

from soar_orl.config import validate_config
from soar_orl.meta.run_dir import RunDir, RunDirError


def config(tmp_path, **run):
    return validate_config({"run": {"name": "r", "output_dir": str(tmp_path), **run}})


def test_existing_run_is_refused_unless_resume_or_overwrite(tmp_path):
    run_dir = RunDir(config(tmp_path))
    run_dir.append_jsonl("metrics.jsonl", {"step": 0})
    with pytest.raises(RunDirError, match="run.resume=true"):
        RunDir(config(tmp_path))
    assert RunDir(config(tmp_path, resume=True)).read_jsonl("metrics.jsonl") == [{"step": 0}]
    assert RunDir(config(tmp_path, overwrite=True)).read_jsonl("metrics.jsonl") == []


def test_resume_drops_rows_the_checkpoint_does_not_cover(tmp_path):
    run_dir = RunDir(config(tmp_path))
    for step in range(4):
        run_dir.append_jsonl("metrics.jsonl", {"step": step})
    run_dir.truncate_jsonl("metrics.jsonl", keep_steps_below=2)
    assert [row["step"] for row in run_dir.read_jsonl("metrics.jsonl")] == [0, 1]


def test_loop_state_and_baseline_round_trip(tmp_path):
    run_dir = RunDir(config(tmp_path))
    assert run_dir.load_loop_state() is None and run_dir.load_baseline() is None
    run_dir.save_loop_state({"next_step": 3, "promotion": {"a": [1]}})
    assert run_dir.load_loop_state() == {"next_step": 3, "promotion": {"a": [1]}}
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    run_dir.save_baseline(weights)
    assert torch.equal(run_dir.load_baseline()["w"], weights["w"])


def test_teacher_publication_replaces_whole_and_survives_a_half_swap(tmp_path):
    run_dir = RunDir(config(tmp_path))
    assert run_dir.latest_teacher() is None
    for version in (1, 2):
        run_dir.teacher_staging_dir.mkdir(parents=True, exist_ok=True)
        (run_dir.teacher_staging_dir / "config.json").write_text(json.dumps({"v": version}))
        run_dir.publish_teacher()
        assert json.loads((run_dir.latest_teacher() / "config.json").read_text()) == {"v": version}
    # A kill between the two renames leaves only teacher.old: resume falls back to it.
    run_dir.teacher_dir.rename(run_dir.checkpoints / "teacher.old")
    assert run_dir.latest_teacher() == run_dir.checkpoints / "teacher.old"

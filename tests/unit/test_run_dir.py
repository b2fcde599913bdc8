"""The run directory and the run state: refusal to overwrite or to resume with a changed config,
resume truncation, the run state's checks, and commits that are whole or absent under failures
injected between their writes."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import soar_orl.meta.run_dir as run_dir_module
from soar_orl.config import MetaConfig, validate_config
from soar_orl.formats import QAPair
from soar_orl.meta.promotion import PromotionTracker
from soar_orl.meta.run_dir import (
    RunDir,
    RunDirError,
    RunState,
    RunStateMismatch,
    baseline_student_dir,
    config_changes,
    write_hf_folder,
)


def config(tmp_path, meta=None, logging=None, **run):
    return validate_config({"run": {"name": "r", "output_dir": str(tmp_path), **run},
                            "meta": meta or {}, "logging": logging or {}})


def test_existing_run_is_refused_unless_resume_or_overwrite(tmp_path):
    run_dir = RunDir(config(tmp_path))
    run_dir.append_jsonl("metrics.jsonl", {"step": 0})
    with pytest.raises(RunDirError, match="run.resume=true"):
        RunDir(config(tmp_path))
    assert RunDir(config(tmp_path, resume=True)).read_jsonl("metrics.jsonl") == [{"step": 0}]
    assert RunDir(config(tmp_path, overwrite=True)).read_jsonl("metrics.jsonl") == []


def test_run_directory_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert RunDir(config("runs")).path == tmp_path / "runs" / "r"


def test_resume_refuses_a_changed_config_and_changes_nothing(tmp_path):
    run_dir = RunDir(config(tmp_path, meta={"n": 16, "g": 4}))
    run_dir.append_jsonl("metrics.jsonl", {"step": 0})
    (run_dir.checkpoints / "baseline_student").mkdir(parents=True)
    (run_dir.checkpoints / "run_state.json").write_text("{}")

    def snapshot():
        return {str(p.relative_to(tmp_path)): p.read_bytes() if p.is_file() else None
                for p in tmp_path.rglob("*")}

    before = snapshot()
    with pytest.raises(RunDirError) as refused:
        RunDir(config(tmp_path, meta={"n": 8, "g": 3, "outer_steps": 50}, resume=True))
    message = str(refused.value)
    assert "meta.n: saved 16, now 8" in message and "meta.g: saved 4, now 3" in message
    assert "outer_steps" not in message.split("A resume may change only")[0]  # a safe change is not listed
    assert snapshot() == before  # every file's bytes, and no file added or removed

    # Safe changes only: accepted, and the new config is the saved one from now on.
    RunDir(config(tmp_path, meta={"n": 16, "g": 4, "outer_steps": 50}, logging={"progress_bar": False},
                  resume=True))
    assert "outer_steps: 50" in (run_dir.path / "config.yaml").read_text()


def test_config_changes_names_every_differing_dotted_key_except_the_safe_ones():
    saved = {"meta": {"n": 16, "tau": 0.01, "outer_steps": 10}, "logging": {"level": "INFO"},
             "data": {"ood_test": []}}
    new = {"meta": {"n": 8, "tau": 0.01, "outer_steps": 20}, "logging": {"level": "DEBUG"},
           "data": {"ood_test": ["x.jsonl"]}, "pools": {"job_retries": 5, "num_nodes": 2}}
    assert config_changes(saved, new) == [
        'data.ood_test: saved [], now ["x.jsonl"]',
        "meta.n: saved 16, now 8",
        "pools.num_nodes: saved <absent>, now 2",
    ]


def test_resume_drops_rows_the_checkpoint_does_not_cover(tmp_path):
    run_dir = RunDir(config(tmp_path))
    for step in range(4):
        run_dir.append_jsonl("metrics.jsonl", {"step": step})
    run_dir.truncate_jsonl("metrics.jsonl", keep_steps_below=2)
    assert [row["step"] for row in run_dir.read_jsonl("metrics.jsonl")] == [0, 1]


# ----------------------------------------------------------------------------- the run state


def tracker_after(steps, promote_at=()):
    """A tracker that saw `steps` steps (window 1, tau 0: a positive reward promotes)."""
    tracker = PromotionTracker(MetaConfig(window=1, tau=0.0))
    for step in range(steps):
        reward = 0.5 if step in promote_at else -0.5
        datasets_G = [[QAPair(f"q{step}", "1")], [QAPair(f"p{step}", "2")]]
        tracker.observe(step, [reward, reward], [[0.5], [0.5]], datasets_G)
    return tracker


def state_at(steps, promote_at=(), trains_teacher=True):
    state = RunState(tracker_after(steps, promote_at), trains_teacher)
    state.next_step = steps
    state.baseline_step = max(promote_at, default=None)
    return state


def test_run_state_round_trips_through_json():
    saved = json.loads(json.dumps(state_at(3, promote_at=(1,)).state_dict()))
    loaded = RunState(PromotionTracker(MetaConfig(window=1, tau=0.0)), trains_teacher=True)
    loaded.load_state_dict(saved)
    assert loaded.state_dict() == saved
    assert (loaded.next_step, loaded.baseline_step, loaded.teacher_tag) == (3, 1, "next_step_3")


def test_run_state_refuses_parts_from_different_steps_naming_each():
    saved = state_at(3, promote_at=(1,)).state_dict()
    saved.update(next_step=4, baseline_step=0, teacher_tag="next_step_2")
    saved["promotion"]["params"]["tau"] = 0.5
    fresh = RunState(PromotionTracker(MetaConfig(window=1, tau=0.0)), trains_teacher=True)
    with pytest.raises(RunStateMismatch) as refused:
        fresh.load_state_dict(saved)
    message = str(refused.value)
    assert "params.tau: this tracker has 0.0, the state has 0.5" in message
    assert "promotion.last_step: 2, but next_step is 4" in message
    assert "baseline_step: 0, but the last promotion in the archive is at step 1" in message
    assert "teacher_tag: this run expects 'next_step_4'" in message
    assert fresh.next_step == 0 and fresh.tracker.archive == []  # nothing changed on refusal
    with pytest.raises(RunStateMismatch, match="missing keys"):
        fresh.load_state_dict({"next_step": 1})


# ----------------------------------------------------------------------------- commits


def weights_of(model_dir: Path, shift: float) -> dict[str, torch.Tensor]:
    """The tiny model's weights moved by `shift`: a distinct student per promotion."""
    return {k: v + shift for k, v in load_file(str(model_dir / "model.safetensors")).items()}


def commit(run_dir, state, student_dir, fail_in_body=False):
    """What OuterLoop.commit does, with a stand-in for the teacher's save (the teacher trainer is a
    Ray actor): an HF marker naming the step, and a DeepSpeed-style tag directory."""
    with run_dir.commit(state, student_dir):
        run_dir.teacher_staging_dir.mkdir(parents=True)
        (run_dir.teacher_staging_dir / "config.json").write_text(json.dumps({"next_step": state.next_step}))
        (run_dir.teacher_optimizer_dir / "_actor" / state.teacher_tag).mkdir(parents=True, exist_ok=True)
        if fail_in_body:
            raise RuntimeError("the teacher's save failed")


def resumed(tmp_path):
    """A resume's view of the run directory: the state, its baseline weights, its teacher marker."""
    run_dir = RunDir(config(tmp_path, resume=True))
    state = RunState(PromotionTracker(MetaConfig(window=1, tau=0.0)), trains_teacher=True)
    baseline = run_dir.resume(state)
    marker = run_dir.teacher_dir / "config.json"
    teacher = json.loads(marker.read_text()) if marker.exists() else None
    return state, baseline, teacher


def test_a_commit_is_whole_or_absent_whatever_fails_between_its_writes(tmp_path, tiny_llama_dir, monkeypatch):
    run_dir = RunDir(config(tmp_path))
    student = weights_of(tiny_llama_dir, 0.0)
    # Step 0 promotes: committed although checkpoint_every has not come round.
    state = RunState(tracker_after(1, promote_at=(0,)), trains_teacher=True)
    state.promote(0, weights_of(tiny_llama_dir, 1.0))
    state.next_step = 1
    commit(run_dir, state, tiny_llama_dir)
    assert state.new_baseline is None  # on disk now, not held twice

    def assert_committed_is_step_1():
        got, baseline, teacher = resumed(tmp_path)
        assert (got.next_step, got.baseline_step, got.teacher_tag) == (1, 0, "next_step_1")
        assert len(got.tracker.archive) == 1
        assert teacher == {"next_step": 1}
        assert all(torch.equal(baseline[k], student[k] + 1.0) for k in student)

    assert_committed_is_step_1()

    # Step 1 promotes again; each failure below is a kill at that point of its commit.
    def next_state():
        later = RunState(tracker_after(2, promote_at=(0, 1)), trains_teacher=True)
        later.promote(1, weights_of(tiny_llama_dir, 2.0))
        later.next_step = 2
        return later

    with pytest.raises(RuntimeError):  # the teacher's save fails
        commit(run_dir, next_state(), tiny_llama_dir, fail_in_body=True)
    assert_committed_is_step_1()

    def fail(*args, **kwargs):
        raise OSError("killed")

    with monkeypatch.context() as patch:  # writing the new baseline fails
        patch.setattr(run_dir_module, "write_hf_folder", fail)
        with pytest.raises(OSError):
            commit(run_dir, next_state(), tiny_llama_dir)
    assert_committed_is_step_1()
    with monkeypatch.context() as patch:  # the run_state.json write fails
        patch.setattr(run_dir_module, "atomic_write_text", fail)
        with pytest.raises(OSError):
            commit(run_dir, next_state(), tiny_llama_dir)
    assert_committed_is_step_1()

    # Killed between the two renames of the swap: run_state.json of step 2 was written, so a
    # resume finishes the swap and continues from step 2.
    real_replace = run_dir_module.os.replace

    def replace_then_die(src, dst):
        if Path(dst) == run_dir.checkpoints:  # the second rename: checkpoints.next -> checkpoints
            raise OSError("killed")
        real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(run_dir_module.os, "replace", replace_then_die)
        with pytest.raises(OSError):
            commit(run_dir, next_state(), tiny_llama_dir)
    assert not run_dir.checkpoints.exists()
    got, baseline, teacher = resumed(tmp_path)
    assert (got.next_step, got.baseline_step, teacher) == (2, 1, {"next_step": 2})
    assert all(torch.equal(baseline[k], student[k] + 2.0) for k in student)
    # Only the committed state's teacher checkpoint stays (uncommitted ones are pruned on resume).
    assert sorted(p.name for p in (run_dir.teacher_optimizer_dir / "_actor").iterdir()) == ["next_step_2"]


def test_an_unchanged_baseline_is_linked_not_rewritten_and_records_are_cut(tmp_path, tiny_llama_dir):
    run_dir = RunDir(config(tmp_path))
    state = RunState(tracker_after(1, promote_at=(0,)), trains_teacher=True)
    state.promote(0, weights_of(tiny_llama_dir, 1.0))
    state.next_step = 1
    commit(run_dir, state, tiny_llama_dir)
    inode = (run_dir.baseline_dir / "model.safetensors").stat().st_ino
    state.tracker = tracker_after(2, promote_at=(0,))  # step 1: no promotion, a regular checkpoint
    state.next_step = 2
    commit(run_dir, state, tiny_llama_dir)
    assert (run_dir.baseline_dir / "model.safetensors").stat().st_ino == inode
    for step in range(4):  # steps 2 and 3 ran after the last commit, then the run was killed
        run_dir.append_jsonl("metrics.jsonl", {"step": step})
        run_dir.write_teacher_samples(step, [{"step": step}])
    got, _, _ = resumed(tmp_path)
    assert got.next_step == 2 and got.baseline_step == 0
    assert [row["step"] for row in run_dir.read_jsonl("metrics.jsonl")] == [0, 1]
    assert sorted(p.name for p in (run_dir.path / "teacher_samples").iterdir()) == ["step_0.jsonl",
                                                                                     "step_1.jsonl"]


def test_resume_without_a_committed_state_starts_over(tmp_path):
    run_dir = RunDir(config(tmp_path))
    run_dir.append_jsonl("metrics.jsonl", {"step": 0})
    state, baseline, teacher = resumed(tmp_path)
    assert (state.next_step, baseline, teacher) == (0, None, None)
    assert run_dir.read_jsonl("metrics.jsonl") == []


def test_baseline_student_is_an_hf_folder_transformers_loads(tmp_path, tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    weights = weights_of(tiny_llama_dir, 0.5)
    folder = write_hf_folder(weights, tiny_llama_dir, tmp_path / "checkpoints" / "baseline_student")
    assert baseline_student_dir(tmp_path) == folder
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)
    tokenizers = [AutoTokenizer.from_pretrained(source) for source in (folder, tiny_llama_dir)]
    assert tokenizers[0]("1+2=").input_ids == tokenizers[1]("1+2=").input_ids

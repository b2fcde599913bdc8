"""The outer step as a function, and a run of steps killed between a promotion's commit and the
next checkpoint, driven without Ray.

The teacher and the student pool are stand-ins with the same interface: the real ones are Ray
actors (OpenRLHF's trainer and vLLM engines, DeepSpeed/vLLM student workers), run for real in
tests/integration/test_outer_loop.py. What is tested here is the loop's control flow: which jobs
are submitted on which Q_R, how the rewards reach the teacher, promotion, the metrics, and which
run states are committed. The run directory, the HF folders and the run state are the real ones.
"""

from __future__ import annotations

import json
from concurrent.futures import Future

import pytest
import torch
from safetensors.torch import load_file

from soar_orl.config import MetaConfig, validate_config
from soar_orl.formats import QAPair, format_teacher_output
from soar_orl.meta.loop import OuterLoop, must_commit, step_metrics
from soar_orl.meta.promotion import PromotionTracker
from soar_orl.meta.run_dir import RunDir, RunState
from soar_orl.student.worker import JobResult
from soar_orl.tasks import build_task
from soar_orl.tasks.base import Problem

G, N, R = 2, 2, 3
BASELINE_ACC = 0.25
# Q_R accuracy of run j of dataset k at step 0; later steps: every student scores as the baseline.
STEP0_ACCS_GR = [[0.5, 0.25, 0.75], [0.0, 0.25, 0.25]]  # gains: mean +0.25 and -1/12


class Killed(Exception):
    """Stands for the driver being killed."""


class FakeTeacher:
    """Every third sample is unparseable, so rejection sampling has something to reject."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir
        self.sampled: list[int] = []
        self.updates: list[tuple[int, list[int], list[float]]] = []
        self.saved: list[str] = []
        self.discarded: list[int] = []

    def sample(self, instruction: str, k: int, step: int) -> list[str]:
        self.sampled.append(step)
        return ["no tags" if i % 3 == 2 else format_teacher_output(QAPair(f"{step}+{i}", str(step + i)))
                for i in range(k)]

    def update(self, step: int, indices: list[int], rewards: list[float]) -> dict:
        self.updates.append((step, indices, rewards))
        return {"policy_loss": 0.125, "note": "not a number"}

    def discard(self, step: int) -> None:
        self.discarded.append(step)

    def save(self, tag: str) -> None:
        """What OpenRLHF's save does: an HF folder in the staging dir, a DeepSpeed tag directory."""
        self.saved.append(tag)
        self.run_dir.teacher_staging_dir.mkdir(parents=True)
        (self.run_dir.teacher_staging_dir / "config.json").write_text(json.dumps({"tag": tag}))
        (self.run_dir.teacher_optimizer_dir / "_actor" / tag).mkdir(parents=True, exist_ok=True)


class FakePool:
    """Finished futures with the accuracies above; each trained job has its own weights."""

    num_workers = 2

    def __init__(self, student_weights: dict[str, torch.Tensor], kill_at_step: int | None = None) -> None:
        self.student_weights = student_weights
        self.kill_at_step = kill_at_step
        self.jobs = []
        self.baselines: list[dict] = []

    def submit(self, job) -> Future:
        step, _, rest = job.job_id.partition("-")
        if int(step[1:]) == self.kill_at_step:
            raise Killed
        self.jobs.append(job)
        if rest == "baseline":
            accuracy = BASELINE_ACC
        else:
            k, j = (int(part[1:]) for part in rest.split("-"))
            accuracy = STEP0_ACCS_GR[k][j] if step == "s0" else BASELINE_ACC
        future: Future = Future()
        future.set_result(JobResult(job.job_id, accuracy, [], [], [], {"train": 1.0}, weights=job.job_id))
        return future

    def submit_many(self, jobs) -> list[Future]:
        return [self.submit(job) for job in jobs]

    def fetch_weights(self, result: JobResult) -> dict[str, torch.Tensor]:
        shift = sum(map(ord, result.weights)) / 1000
        return {k: v + shift for k, v in self.student_weights.items()}

    def set_baseline(self, weights) -> None:
        self.baselines.append(weights)

    def utilisation(self) -> float:
        return 0.5


@pytest.fixture
def cfg(tmp_path):
    return validate_config({
        "run": {"name": "r", "output_dir": str(tmp_path)},
        "data": {"task": "arith", "q_r_size": 4},
        "student": {"batch_prompts": 2, "group_size": 2, "train_micro_batch_size": 2},
        "meta": {"mode": "grounded", "g": G, "n": N, "r": R, "tau": 0.0, "window": 1, "outer_steps": 3,
                 "checkpoint_every": 5, "async": True},
        "logging": {"tensorboard": False, "progress_bar": False},
    })


HARD_TRAIN = [Problem(f"h{i}", f"{i}+{i}", str(2 * i)) for i in range(8)]


def make_loop(cfg, student_dir, kill_at_step=None, resume=False):
    run_dir = RunDir(cfg.model_copy(update={"run": cfg.run.model_copy(update={"resume": resume})}))
    state = RunState(PromotionTracker(MetaConfig(window=1, tau=0.0)), trains_teacher=cfg.meta.trains_teacher)
    baseline = run_dir.resume(state) if resume else None
    pool = FakePool(load_file(str(student_dir / "model.safetensors")), kill_at_step)
    teacher = FakeTeacher(run_dir)
    loop = OuterLoop(cfg, build_task("arith"), HARD_TRAIN, teacher, pool, run_dir, str(student_dir))
    return loop, state, baseline


def test_one_outer_step(cfg, tiny_llama_dir):
    loop, state, _ = make_loop(cfg, tiny_llama_dir)
    result = loop.step(state, 0)

    # 1-2. g*n valid pairs in g datasets; with meta.async step 1 is sampled during step 0.
    assert loop.teacher.sampled[0] == 0 and loop.teacher.sampled[-1] == 1 and loop.pending.step == 1
    assert [len(d) for d in result.datasets_G] == [N] * G
    # 3. one baseline job and g*r trained jobs, all scored on the same Q_R of hard train problems.
    jobs = loop.pool.jobs
    assert len(jobs) == 1 + G * R and jobs[0].steps == 0
    assert len({job.eval_pairs for job in jobs}) == 1 and len(jobs[0].eval_pairs) == 4
    assert {pair.question for pair in jobs[0].eval_pairs} <= {p.problem for p in HARD_TRAIN}
    for k in range(G):
        runs_of_k = jobs[1 + k * R : 1 + (k + 1) * R]
        assert all(job.train_pairs == tuple(result.datasets_G[k]) for job in runs_of_k)
    assert all(job.steps == cfg.student.inner_steps and job.return_weights for job in jobs[1:])
    assert len({job.seed for job in jobs[1:]}) == G * R
    # 4-5. grounded rewards, one per sample of each dataset, reach the teacher's update.
    assert result.rewards_G == pytest.approx([0.25, -1 / 12])
    (step, indices, rewards), = loop.teacher.updates
    assert step == 0 and len(indices) == G * N and rewards == pytest.approx([0.25] * N + [-1 / 12] * N)
    assert all(result.batch.samples[i] != "no tags" for i in indices)
    # 6. the median run (0.5 of 0.25, 0.5, 0.75) of the best dataset becomes everyone's baseline.
    entry = result.decision.promoted
    assert (entry.dataset_index, entry.run_index, entry.student_accuracy) == (0, 0, 0.5)
    promoted = loop.pool.fetch_weights(result.results_GR[0][0])
    assert all(torch.equal(loop.pool.baselines[-1][k], promoted[k]) for k in promoted)
    assert (state.next_step, state.baseline_step) == (1, 0) and state.new_baseline is loop.pool.baselines[-1]
    assert must_commit(result, cfg.meta)  # a promotion commits although checkpoint_every=5
    assert loop.teacher.discarded == []

    # The metrics line is a function of the result alone.
    row = step_metrics(result)
    assert row["reward/mean"] == pytest.approx((0.25 - 1 / 12) / 2)
    assert (row["student/q_r_acc_baseline"], row["student/q_r_acc_best"]) == (0.25, 0.75)
    assert row["student/q_r_acc/dataset_1"] == pytest.approx(0.5 / 3)
    assert row["promotion/promoted"] == 1.0 and row["promotion/count"] == 1.0
    assert row["time/students_busy"] == (1 + G * R) * 1.0 / FakePool.num_workers
    assert row["teacher/policy_loss"] == 0.125 and "teacher/note" not in row
    assert 0 < row["teacher/valid_rate"] < 1 and row["teacher/policy_lag"] == 0

    # Step 1 uses the batch sampled ahead (one step of policy lag) and the longer inner runs
    # that follow a promotion; nothing is promoted, so nothing forces a commit.
    later = loop.step(state, 1)
    assert later.policy_lag == 1 and later.batch.step == 1
    assert later.inner_steps == cfg.student.inner_steps + cfg.student.extra_steps_after_promotion
    assert later.decision.promoted is None and not must_commit(later, cfg.meta)


def test_killed_after_an_uncommitted_step_resumes_from_the_promotions_commit(cfg, tiny_llama_dir):
    # checkpoint_every=5: only the promotion of step 0 commits; step 1 runs and is recorded, and
    # the run is killed in step 2.
    loop, state, _ = make_loop(cfg, tiny_llama_dir, kill_at_step=2)
    with pytest.raises(Killed):
        loop.run(state)
    assert loop.teacher.saved == ["next_step_1"]
    assert [row["step"] for row in loop.run_dir.read_jsonl("metrics.jsonl")] == [0, 1]
    promoted = loop.pool.baselines[0]

    loop, state, baseline = make_loop(cfg, tiny_llama_dir, resume=True)
    # The last committed state, every part from step 0's commit.
    assert (state.next_step, state.baseline_step, state.teacher_tag) == (1, 0, "next_step_1")
    assert len(state.tracker.archive) == 1
    assert all(torch.equal(baseline[k], promoted[k]) for k in promoted)
    assert json.loads((loop.run_dir.teacher_dir / "config.json").read_text()) == {"tag": "next_step_1"}
    assert [row["step"] for row in loop.run_dir.read_jsonl("metrics.jsonl")] == [0]
    assert [row["step"] for row in loop.run_dir.read_jsonl("promoted_questions.jsonl")] == [0]

    loop.run(state)  # steps 1 and 2; the last step commits
    assert loop.teacher.saved == ["next_step_3"]
    assert [row["step"] for row in loop.run_dir.read_jsonl("metrics.jsonl")] == [0, 1, 2]
    rows = loop.run_dir.read_jsonl("metrics.jsonl")
    assert rows[1]["student/inner_steps"] == cfg.student.inner_steps + cfg.student.extra_steps_after_promotion
    assert json.loads((loop.run_dir.checkpoints / "run_state.json").read_text())["next_step"] == 3


def test_a_frozen_base_teacher_is_never_updated_nor_saved(cfg, tiny_llama_dir):
    # meta.mode=base_teacher (recipes/cpu_base_teacher.yaml): the same students and promotion,
    # but the teacher's batch is discarded instead of trained on, and a commit saves no teacher.
    base = cfg.model_copy(update={"meta": cfg.meta.model_copy(update={"mode": "base_teacher"})})
    assert not base.meta.trains_teacher
    loop, state, _ = make_loop(base, tiny_llama_dir)
    result = loop.step(state, 0)
    assert loop.teacher.updates == [] and loop.teacher.discarded == [0]
    assert result.rewards_G == pytest.approx([0.25, -1 / 12]) and result.decision.promoted is not None
    loop.commit(state)
    assert loop.teacher.saved == [] and state.teacher_tag is None
    assert not loop.run_dir.teacher_staging_dir.exists() and not (loop.run_dir.path / "checkpoints" / "teacher").exists()
    assert (loop.run_dir.path / "checkpoints" / "run_state.json").exists()

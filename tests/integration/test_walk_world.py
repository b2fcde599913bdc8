"""The walk world end to end: pretraining -> vLLM -> fail@k hard split, for real.

The first test runs a seconds-long pretraining of a base model and of a teacher through the same
code paths as the real ones. The second checks what the committed models promise (the premises
of RESULTS.md's walk-world findings); from artifacts/ it takes about a minute of vLLM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soar_orl.eval.sampling import start_engine, stop_engine, success_counts
from soar_orl.eval.splits import SPLIT_FILES, SUMMARY_FILE
from soar_orl.eval.walk_hard import WalkSplitSettings, hard_split_dir, length_success, teacher_pairs
from soar_orl.formats import QAPair
from soar_orl.resolve import resolve_problems
from soar_orl.tasks.pretraining import SETTINGS_FILE
from soar_orl.tasks.problems import load_problems
from soar_orl.tasks.walk import WalkTask, WalkWorld, walk_problems
from soar_orl.tasks.walk_model import (
    WalkPretrainSettings,
    WalkTeacherSettings,
    base_model_dir,
    teacher_model_dir,
)
from soar_orl.tiny_model import TinyLlamaSpec

pytestmark = pytest.mark.integration

TASK = WalkTask()


def test_small_pretraining_runs_in_vllm_and_yields_a_hard_split(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SOAR_ORL_CACHE", str(tmp_path))
    settings = WalkPretrainSettings(
        world=WalkWorld(max_steps=6),
        spec=TinyLlamaSpec(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=1,
                           num_key_value_heads=1, max_position_embeddings=256),
        steps=20, batch_size=16,
    )
    model_dir = base_model_dir(settings)
    assert model_dir.parent == tmp_path and model_dir.name.startswith("walk-base-")
    record = json.loads((model_dir / SETTINGS_FILE).read_text())
    assert record["settings"]["world"]["max_steps"] == 6 and record["final_loss"] > 0
    teacher_dir = teacher_model_dir(WalkTeacherSettings(base=settings, steps=5, batch_size=8))
    assert teacher_dir.name.startswith("walk-teacher-")
    assert json.loads((teacher_dir / SETTINGS_FILE).read_text())["teacher"]["steps"] == 5

    task = WalkTask(settings.world)
    llm = start_engine(model_dir)
    try:
        assert set(length_success(llm, task, 2, 16)) == set(range(1, 7))
        valid, pairs = teacher_pairs(llm, task, 8, 40)
        assert 0 <= valid <= 1 and all(isinstance(p, QAPair) for p in pairs)
    finally:
        stop_engine(llm)

    split_dir = hard_split_dir(settings, WalkSplitSettings(min_steps=5, k=4))
    summary = json.loads((split_dir / SUMMARY_FILE).read_text())
    train = load_problems(split_dir / SPLIT_FILES["hard_train"])
    test = load_problems(split_dir / SPLIT_FILES["hard_test"])
    assert (len(train), len(test)) == (summary["train"], summary["test"])
    assert set(summary["lengths"]) == {"5", "6"}
    assert sum(row["hard"] for row in summary["lengths"].values()) == len(train) + len(test)
    for problem in train + test:
        assert problem.answer == settings.world.walk(problem.problem[0], problem.metadata["steps"])


def test_the_committed_models_keep_their_promises() -> None:
    world = TASK.world
    clean = [p for p in walk_problems(world, range(1, 4)) if p.metadata["noisy"] == 0]
    from_noisy = [p for p in walk_problems(world, [1]) if p.metadata["noisy"] == 1]
    student = start_engine(base_model_dir(), seed=1)
    try:
        def success(problems, samples):
            return sum(success_counts(student, TASK, problems, samples, 1.0, 32).values()) / (len(problems) * samples)

        assert success(clean, 8) >= 0.95  # the clean steps are known
        assert 0.15 <= success(from_noisy, 64) <= 0.45  # a noisy step is right about 30% of the time
        test = resolve_problems("builtin:walk/hard_test")
        greedy = success_counts(student, TASK, test, 1, 0.0, 32)
        assert sum(greedy.values()) / len(test) <= 0.05  # greedy decoding does not solve the hard walks
        valid, _ = teacher_pairs(student, TASK, 64, 80)
        assert valid >= 0.9  # the same-model teacher writes parseable pairs
    finally:
        stop_engine(student)
    teacher = start_engine(teacher_model_dir(), seed=1)
    try:
        valid, pairs = teacher_pairs(teacher, TASK, 128, 80)
    finally:
        stop_engine(teacher)
    right = [p for p in pairs if TASK.reference_answer(p.question) == p.answer]
    assert valid >= 0.9 and len(right) >= 0.9 * len(pairs)  # builtin:walk-teacher knows the walks
    lengths = {len(p.answer) - 1 for p in pairs}
    assert min(lengths) <= 2 and max(lengths) >= 12  # ... and still writes walks of every length

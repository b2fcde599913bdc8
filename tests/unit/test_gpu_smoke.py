"""scripts/gpu_smoke.py: its weight comparison (the whole smoke on a CUDA machine:
tests/integration/test_gpu_smoke.py)."""

import importlib.util
from pathlib import Path

SMOKE = Path(__file__).resolve().parents[2] / "scripts" / "gpu_smoke.py"
_spec = importlib.util.spec_from_file_location("gpu_smoke", SMOKE)
smoke = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smoke)


def test_weight_comparison_uses_shared_names_and_flags_differences():
    engine = {"model.norm.weight": 12.0, "model.layers.0.self_attn.qkv_proj.weight": 3.0, "lm_head.weight": 1.0}
    trainer = {"model.norm.weight": 12.0, "model.layers.0.self_attn.q_proj.weight": 1.0, "lm_head.weight": 1.5}
    assert smoke.compare_weights(engine, trainer) == (2, ["lm_head.weight"])
    assert smoke.compare_weights(engine, dict(trainer, **{"lm_head.weight": 1.0})) == (2, [])

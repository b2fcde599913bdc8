"""scripts/gpu_smoke.py: its weight comparison (the whole smoke on a CUDA machine:
tests/integration/test_gpu_smoke.py)."""

import importlib.util
import sys
from pathlib import Path

import torch

SMOKE = Path(__file__).resolve().parents[2] / "scripts" / "gpu_smoke.py"
_spec = importlib.util.spec_from_file_location("gpu_smoke", SMOKE)
smoke = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = smoke  # dataclasses look their module up there
_spec.loader.exec_module(smoke)


PACKED = {"qkv_proj": ["q_proj", "k_proj", "v_proj"]}
ATTN = "model.layers.0.self_attn."


def hf_weights(shift: float) -> dict[str, torch.Tensor]:
    """A Hugging Face state as the trainer holds it; `shift` moves every tensor (training)."""
    return {
        **{f"{ATTN}{p}_proj.weight": torch.full((2, 3), float(i)) + shift for i, p in enumerate("qkv")},
        "model.norm.weight": torch.ones(3) + shift,
        "model.embed_tokens.weight": torch.arange(6.0).reshape(3, 2) + shift,
    }


def engine_view(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights as vLLM holds them: q, k, v fused, the vocabulary padded with zero rows."""
    return {
        f"{ATTN}qkv_proj.weight": torch.cat([hf[f"{ATTN}{p}_proj.weight"] for p in "qkv"]),
        "model.norm.weight": hf["model.norm.weight"],
        "model.embed_tokens.weight": torch.cat([hf["model.embed_tokens.weight"], torch.zeros(1, 2)]),
    }


def test_weight_check_passes_only_when_vllm_holds_the_moved_weights():
    baseline, trained = hf_weights(0.0), hf_weights(0.5)
    synced = smoke.compare_weights(engine_view(trained), PACKED, trained, baseline)
    assert synced.ok and (synced.compared, synced.moved) == (3, 3)
    # No sync: vLLM still holds the baseline, every tensor differs.
    stale = smoke.compare_weights(engine_view(baseline), PACKED, trained, baseline)
    assert not stale.ok and len(stale.differ) == 3
    # One fused part not synced (v_proj) is caught through the fused tensor.
    partly = dict(trained, **{f"{ATTN}v_proj.weight": baseline[f"{ATTN}v_proj.weight"]})
    assert smoke.compare_weights(engine_view(partly), PACKED, trained, baseline).differ == [f"{ATTN}qkv_proj.weight"]
    # Nothing moved in training: equal weights cannot tell a sync from none.
    unmoved = smoke.compare_weights(engine_view(baseline), PACKED, baseline, baseline)
    assert not unmoved.ok and unmoved.moved == 0 and not unmoved.differ
    # A vLLM tensor the trainer has no counterpart for is not silently passed.
    extra = smoke.compare_weights(dict(engine_view(trained), **{"model.extra.weight": torch.ones(1)}), PACKED,
                                  trained, baseline)
    assert not extra.ok and extra.unmatched == ["model.extra.weight"]


def test_weight_check_reads_a_wrong_shape_as_a_difference():
    baseline, trained = hf_weights(0.0), hf_weights(0.5)
    engine = dict(engine_view(trained), **{"model.norm.weight": torch.empty(0)})  # e.g. a kernel-format weight
    assert smoke.compare_weights(engine, PACKED, trained, baseline).differ == ["model.norm.weight"]

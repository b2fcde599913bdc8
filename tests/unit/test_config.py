"""The recipe schema: every recipe loads, overrides apply, each class of bad input is refused
with a message naming the key."""

from pathlib import Path

import pytest

from soar_orl.cli import main as soar_main
from soar_orl.config import COLOCATED_ACTOR_GPU, ConfigError, config_to_dict, load_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
PAPER_RECIPE = ROOT / "recipes" / "math_grounded.yaml"


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_starts_with_a_header(recipe: Path):
    cfg = load_config(recipe)
    assert cfg.run.name == recipe.stem
    header = recipe.read_text().splitlines()[0]
    assert header.startswith("# "), "recipes start with a header comment saying what they run"
    assert f"bash run.sh recipes/{recipe.name}" in recipe.read_text()


def test_recipe_set_covers_every_mode():
    modes = {load_config(r).meta.mode for r in RECIPES}
    assert modes == {"grounded", "intrinsic", "base_teacher", "hard_only", "oracle"}


def test_defaults_are_the_papers():
    cfg = validate_config({})
    assert (cfg.meta.g, cfg.meta.n, cfg.meta.r, cfg.meta.tau, cfg.meta.window) == (4, 64, 4, 0.01, 3)
    assert (cfg.student.inner_steps, cfg.student.batch_prompts, cfg.student.group_size) == (10, 8, 32)
    assert cfg.data.q_r_size == 64 and cfg.student.lr == cfg.teacher.lr == 1e-5
    assert (cfg.teacher.max_new_tokens, cfg.student.max_new_tokens) == (512, 1024)


def test_base_recipe_is_merged_and_child_wins(tmp_path):
    write(tmp_path, "meta: {g: 8, n: 16}\nrun: {seed: 5}\n", "parent.yaml")
    child = write(tmp_path, "base: parent.yaml\nmeta: {n: 32}\n")
    cfg = load_config(child)
    assert (cfg.meta.g, cfg.meta.n, cfg.run.seed) == (8, 32, 5)


def test_overrides_are_typed_and_nested():
    cfg = load_config(PAPER_RECIPE, ["meta.g=6", "meta.tau=0.5", "meta.async=false", "data.ood_test=[a.jsonl, b.jsonl]"])
    assert cfg.meta.g == 6 and cfg.meta.tau == 0.5 and cfg.meta.async_ is False
    assert cfg.data.ood_test == ["a.jsonl", "b.jsonl"]
    assert config_to_dict(cfg)["meta"]["async"] is False


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["meta.gg=3"], "meta.gg: unknown key (allowed: mode, g, n, r"),
        (["nosection.x=1"], "nosection: unknown key (allowed: run, backend, model"),
        (["meta.g=three"], "meta.g: Input should be a valid integer"),
        (["meta.mode=greedy"], "meta.mode: Input should be 'grounded', 'intrinsic', 'base_teacher', 'hard_only' or 'oracle'"),
        (["student.group_size=1"], "student.group_size: Input should be greater than or equal to 2"),
        (["backend=tpu"], "backend: Input should be 'auto', 'cpu' or 'cuda'"),
        (["meta.g=1"], "meta.g: RLOO needs at least 2 datasets"),
        (["pools.student_gpus=40"], "exceeds the cluster"),
        (["pools.gpus_per_student_worker=3", "pools.student_gpus=20"], "must be a multiple of pools.gpus_per_student_worker"),
        (["pools.teacher_vllm_engines=9"], "pools.teacher_vllm_engines (9) cannot exceed pools.teacher_gpus (8)"),
        (["meta.mode=oracle"], "data.full_train is required by meta.mode=oracle"),
        (["model.student=builtin:arith-lsd"], "model.student=builtin:arith-lsd belongs to the arith-lsd world, but data.task is math"),
        (["data.task=arith-lsd", "model.teacher=builtin:arith-teacher"], "model.teacher=builtin:arith-teacher belongs to the arith world"),
        (["data.task=arith", "data.hard_test=builtin:arith-lsd/edge_test"], "data.hard_test=builtin:arith-lsd/edge_test belongs to the arith-lsd"),
        (["meta.mode=hard_only", "student.lora.rank=8"], "student.lora.rank=8 in meta.mode=hard_only: the RLVR baselines"),
        (["student.reward.wrong=2"], "student.reward: reward levels must satisfy correct >= unverified"),
        (["pools.share_gpu=true"], "needs pools.teacher_gpus, student_gpus, teacher_vllm_engines, gpus_per_student_worker"),
        (["meta.g"], "must look like key.sub=value"),
        (["meta.g.x=1"], "meta.g is a value, not a section"),
    ],
)
def test_bad_input_names_the_key(overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config(PAPER_RECIPE, overrides)
    assert expected in str(err.value)


@pytest.mark.parametrize(
    "override",
    ["meta.tau=nan", "meta.tau=.inf", "teacher.lr=inf", "pools.job_timeout_s=.inf", "student.reward.no_answer=-.inf",
     "evaluation.temperature=NaN"],
)
def test_nan_and_inf_are_refused_at_load(override):
    """They pass bounds (inf > 0) or have none (meta.tau), and would fail only once the run started."""
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}: Input should be a finite number"):
        load_config(PAPER_RECIPE, [override])


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        load_config(PAPER_RECIPE, ["meta.gg=1", "run.seed=-1", "student.lr=0"])
    message = str(err.value)
    assert "meta.gg" in message and "run.seed" in message and "student.lr" in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("meta: [1, 2\n", "is not valid YAML"),
        ("- just\n- a list\n", "must be a mapping of sections"),
        ("base: 3\n", "`base` must be a recipe path"),
        ("base: missing.yaml\n", "recipe not found"),
    ],
)
def test_malformed_recipe_files(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_base_loop_is_refused(tmp_path):
    write(tmp_path, "base: b.yaml\n", "a.yaml")
    write(tmp_path, "base: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="chain loops"):
        load_config(tmp_path / "a.yaml")


def test_cli_config_prints_resolved_yaml_and_fails_cleanly(capsys):
    assert soar_main(["config", str(PAPER_RECIPE), "meta.g=5"]) == 0
    assert "g: 5" in capsys.readouterr().out
    assert soar_main(["config", str(PAPER_RECIPE), "meta.g=zero"]) == 2
    assert "meta.g" in capsys.readouterr().err


def test_q_r_is_scored_greedily_unless_samples_are_asked_for():
    assert validate_config({}).student.q_r_samples == 0
    assert validate_config({"student": {"q_r_samples": 16}}).student.q_r_samples == 16
    with pytest.raises(ConfigError, match="student.q_r_samples: Input should be greater than or equal to 0"):
        validate_config({"student": {"q_r_samples": -1}})
    assert validate_config({"student": {"q_r_samples": 4, "lora": {"rank": 4}}}).student.q_r_samples == 4


def test_one_shared_gpu_holds_the_teacher_and_one_student_worker():
    one_gpu = ["pools.num_nodes=1", "pools.gpus_per_node=1", "pools.teacher_gpus=1", "pools.teacher_vllm_engines=1",
               "pools.student_gpus=1", "pools.rlvr_gpus=1"]
    with pytest.raises(ConfigError, match="exceeds the cluster"):  # two pools, one GPU, not shared
        load_config(PAPER_RECIPE, one_gpu)
    pools = load_config(PAPER_RECIPE, [*one_gpu, "pools.share_gpu=true"]).pools
    assert pools.teacher_bundle_gpus + pools.student_bundle_gpus == pytest.approx(1.0)
    assert pools.teacher_bundle_gpus == pytest.approx(3 * COLOCATED_ACTOR_GPU)  # engine, actor, reference
    with pytest.raises(ConfigError, match="a cluster of 2 GPUs"):
        load_config(PAPER_RECIPE, [*one_gpu, "pools.gpus_per_node=2", "pools.share_gpu=true"])
    with pytest.raises(ConfigError, match="meta.mode=hard_only has no teacher"):
        load_config(PAPER_RECIPE, [*one_gpu, "pools.share_gpu=true", "meta.mode=hard_only"])
    unshared = load_config(PAPER_RECIPE).pools
    assert (unshared.teacher_bundle_gpus, unshared.student_bundle_gpus) == (1, unshared.gpus_per_student_worker)

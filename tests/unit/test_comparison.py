"""How the final comparison derives its RLVR students' recipes (meta/comparison.py)."""

from pathlib import Path

from soar_orl.config import load_config
from soar_orl.meta.comparison import rlvr_student_config
from soar_orl.methods import HARD_ONLY, ORACLE

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"


def test_rlvr_students_fine_tune_all_weights_after_a_run_with_lora_students(tmp_path):
    cfg = load_config(QUICKSTART, ["student.lora.rank=8", "pools.students_per_worker=4"])
    for method, mode in ((HARD_ONLY, "hard_only"), (ORACLE, "oracle")):
        sub = rlvr_student_config(cfg, tmp_path, method, method.slug, steps=7)
        assert sub.meta.mode == mode and sub.meta.rlvr_steps == 7 and sub.evaluation.after_run == []
        assert sub.student.lora.rank == 0 and sub.pools.students_per_worker == 1
        assert sub.student.lr == cfg.student.lr and sub.student.group_size == cfg.student.group_size
        assert sub.run.output_dir == str(tmp_path / "baselines") and sub.run.name == method.slug

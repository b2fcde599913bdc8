# Rung 3 in the walk world: the quickstart's SOAR variants with the pretrained teacher
# (builtin:walk-teacher), at the quickstart's budget, one run per variant and seed.
# Usage: bash docs/probe/walk/study.sh MODE SEED [AFTER_RUN]
#   MODE grounded|intrinsic|base_teacher; AFTER_RUN the evaluation.after_run list (default [pq];
#   Hard-Only is teacher-free, so one variant's runs train it: [hard_only,pq]).
M=$1; S=$2; A=${3:-[pq]}
bash run.sh recipes/quickstart.yaml model.teacher=builtin:walk-teacher meta.mode=$M run.seed=$S \
    "evaluation.after_run=$A" logging.progress_bar=false run.name=qs-walk-pt-$M-s$S

#!/usr/bin/env bash
# The arithmetic-world study of RESULTS.md: Grounded-T (the quickstart), Intrinsic-T and Base-T,
# each run ending with its SOAR-PQ student and the pass@k table, over seeds; then
# the diversity of each run's questions and one report over all runs.
#
#   bash scripts/study_arith.sh                 # seeds 0 1 2: 9 runs of about 8 minutes on 2 cores
#   SEEDS="0 1" bash scripts/study_arith.sh     # fewer seeds
#   RECIPES="cpu_intrinsic" bash scripts/study_arith.sh   # some variants only
#
# Finished runs (eval/final.json present) are skipped, so a stopped study continues where it was.
# Hard-Only and Oracle are trained in the quickstart runs only: `soar report` pools them once per seed.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
RECIPES=${RECIPES:-"quickstart cpu_intrinsic cpu_base_teacher"}
for seed in $SEEDS; do
  for recipe in $RECIPES; do
    name="study-${recipe}-s${seed}"
    if [ -f "runs/${name}/eval/final.json" ]; then continue; fi
    # Hard-Only and Oracle depend on the seed only, so the grounded run (the quickstart) trains them
    # once per seed; Oracle (RLVR on every pool problem of the hard bands, solved or not) tells
    # whether real problems of these bands can teach the student at all.
    after_run=("evaluation.after_run=[pq]")
    if [ "$recipe" = quickstart ]; then
      after_run=("evaluation.after_run=[hard_only,oracle,pq]" "data.full_train=builtin:arith/full_train")
    fi
    bash run.sh "recipes/${recipe}.yaml" "run.seed=${seed}" "run.name=${name}" run.overwrite=true \
      logging.progress_bar=false "${after_run[@]}"
    bash run.sh questions "runs/${name}" --samples 0
  done
done
bash run.sh report runs/study-* --out report/study

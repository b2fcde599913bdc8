# Hard-Only and Oracle on a world's edge split at a small RLVR budget, then 32 samples per
# edge_test sum. Default budget: the quickstart's own (8 prompts x 4 samples, lr 1e-3, 24 steps).
# Usage: bash docs/probe/edge-small/rlvr.sh WORLD METHOD SEED [TAG OVERRIDES...]
#   WORLD arith|arith-lsd, METHOD hard_only|oracle; TAG names the budget given by the overrides,
#   e.g. `b16lr3-12 student.batch_prompts=16 student.group_size=16 student.lr=3e-4 meta.rlvr_steps=12`
W=$1; M=$2; S=$3; T=${4:-quickstart}; shift 4 2>/dev/null || shift $#
N=edge-small-$W-$T-$M-s$S
L="model.student=builtin:$W model.teacher=builtin:$W data.task=$W data.hard_train=builtin:$W/edge_train \
   data.hard_test=builtin:$W/edge_test data.full_train=builtin:$W/edge_full_train"
bash run.sh recipes/cpu_$M.yaml logging.progress_bar=false $L "$@" run.seed=$S run.name=$N
bash run.sh eval --model runs/$N/checkpoints/student --task $W \
    --test edge_test=builtin:$W/edge_test --samples 32 --ks 1 8 32 --max-tokens 16 \
    --dtype float32 --max-model-len 256 --out runs/$N-eval32

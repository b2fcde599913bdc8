# Hard-Only and Oracle on a world's edge split at the quickstart's own RLVR budget
# (8 prompts x 4 samples, lr 1e-3, 24 steps: 768 samples), then 32 samples per edge_test sum.
# Usage: bash docs/probe/edge-small/rlvr.sh WORLD METHOD SEED   (WORLD arith|arith-lsd, METHOD hard_only|oracle)
W=$1; M=$2; S=$3; N=edge-small-$W-$M-s$S
L="model.student=builtin:$W model.teacher=builtin:$W data.task=$W data.hard_train=builtin:$W/edge_train \
   data.hard_test=builtin:$W/edge_test data.full_train=builtin:$W/edge_full_train"
bash run.sh recipes/cpu_$M.yaml logging.progress_bar=false $L run.seed=$S run.name=$N
bash run.sh eval --model runs/$N/checkpoints/student --task $W \
    --test edge_test=builtin:$W/edge_test --samples 32 --ks 1 8 32 --max-tokens 16 \
    --dtype float32 --max-model-len 256 --out runs/$N-eval32

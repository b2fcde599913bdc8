# Hard-Only or Oracle in the walk world (vanilla OpenRLHF RLVR from builtin:walk), then 32 samples
# per hard test walk. Default budget: the quickstart's own (8 prompts x 4 samples, lr 1e-3, 24 steps).
# Usage: bash docs/probe/walk/rlvr.sh METHOD SEED [TAG OVERRIDES...]
#   METHOD hard_only|oracle; TAG names the budget given by the overrides, e.g.
#   `b16lr3-24 student.batch_prompts=16 student.group_size=16 student.lr=3e-4`
M=$1; S=$2; T=${3:-quickstart}; shift 3 2>/dev/null || shift $#
N=walk-$T-$M-s$S
bash run.sh recipes/quickstart.yaml meta.mode=$M pools.teacher_gpus=0 "evaluation.after_run=[]" \
    logging.progress_bar=false "$@" run.seed=$S run.name=$N
bash run.sh eval --model runs/$N/checkpoints/student --task walk --test hard_test=builtin:walk/hard_test \
    --samples 32 --ks 1 8 32 --max-tokens 32 --dtype float32 --max-model-len 256 --out runs/$N-eval32

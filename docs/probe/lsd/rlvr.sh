# Hard-Only and Oracle in the units-first world, default split, the rung-2 budget.
M=$1; S=$2
O="student.group_size=16 student.batch_prompts=16 student.lr=3e-4 meta.rlvr_steps=102 logging.progress_bar=false"
L="model.student=builtin:arith-lsd model.teacher=builtin:arith-lsd data.task=arith-lsd data.hard_train=builtin:arith-lsd/hard_train data.hard_test=builtin:arith-lsd/hard_test data.full_train=builtin:arith-lsd/full_train"
bash run.sh recipes/cpu_$M.yaml $O $L run.seed=$S run.name=lsd-$M-s$S
bash run.sh eval --model runs/lsd-$M-s$S/checkpoints/student --task arith-lsd \
    --test hard_test=builtin:arith-lsd/hard_test --samples 32 --ks 1 8 32 --max-tokens 16 \
    --dtype float32 --max-model-len 256 --out runs/lsd-eval32-$M-s$S

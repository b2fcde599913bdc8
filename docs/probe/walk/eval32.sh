# pass@1/8/32 from 32 samples per hard test walk of a study run's SOAR-PS and SOAR-PQ students
# (the quickstart's own table samples 8 per walk). Usage: bash docs/probe/walk/eval32.sh RUN_DIR
R=$1
for M in ps pq; do
  case $M in ps) D=$R/checkpoints/baseline_student ;; pq) D=$R/baselines/soar_pq/checkpoints/student ;; esac
  bash run.sh eval --model $D --task walk --test hard_test=builtin:walk/hard_test --samples 32 --ks 1 8 32 \
      --max-tokens 32 --dtype float32 --max-model-len 256 --out $R-$M-eval32
done

#!/usr/bin/env bash
# Two GPUs vs one at the same global batch, on the tiny SD3 and the fixture set (issue: training, item 6).
# Runs 1 GPU x batch 8 (seeds 0 and 1, the second one to measure run-to-run noise) and 2 GPUs x batch 4
# (seed 0), then tests/gpu/summarize_2gpu.py compares data shards and loss curves.
# Usage, on a machine with 2 GPUs: bash tests/gpu/train_2gpu.sh OUT_DIR [STEPS] (tests/test_gpu.py runs it short).
# The tiny settings come from the one tiny profile, data/profiles/tiny.yaml.
set -euo pipefail
OUT=${1:-reports/train_2gpu}
STEPS=${2:-300}
COMMON=(--profile data/profiles/tiny.yaml --max_train_steps "$STEPS" --checkpointing_steps 100000
        --validation_steps 0 --log_data_ids)
python3 -c "from lpd.tiny import ensure_tiny; print(ensure_tiny())"
run() {  # config, per-GPU batch, seed, name
  local t0=$SECONDS
  accelerate launch --config_file "data/accelerate/$1.yaml" --mixed_precision no -m lpd.train "${COMMON[@]}" \
    --train_batch_size "$2" --seed "$3" --output_dir "$OUT/$4" > "$OUT/$4.log" 2>&1
  echo "$4: $((SECONDS - t0)) s"
}
mkdir -p "$OUT"
run 1gpu 8 0 1gpu_s0
run 2gpu 4 0 2gpu_s0
run 1gpu 8 1 1gpu_s1
python3 tests/gpu/summarize_2gpu.py "$OUT"

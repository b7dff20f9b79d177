#!/usr/bin/env bash
# The synthetic training study (issue 7): a full-attention model trained from scratch, run with BigBird
# attention unchanged (zero-shot), then fine-tuned attention-only with and without distillation.
# Usage: benchmarks/training/run_synthetic.sh [WORK_DIR]   (from the repository root; about 30 min on one
# shared CPU thread)
set -euo pipefail
WORK=${1:-${TMPDIR:-/tmp}/senformer-training-synthetic}
RESULTS=benchmarks/results/training_synthetic
SENFORMER=${SENFORMER:-.venv/bin/senformer}
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p "$WORK" "$RESULTS"

"$SENFORMER" data synthetic "$WORK/data" --size small --seed 0
"$SENFORMER" train --config benchmarks/training/full.yaml --data "$WORK/data" --out "$WORK/full" --no-progress
"$SENFORMER" train --config benchmarks/training/finetune.yaml --data "$WORK/data" --init "$WORK/full/weights" \
    --out "$WORK/bigbird-attention" --no-progress
"$SENFORMER" train --config benchmarks/training/finetune.yaml --data "$WORK/data" --init "$WORK/full/weights" \
    --teacher "$WORK/full/weights" --distill-weight 0.5 --out "$WORK/bigbird-attention-distill" --no-progress
"$SENFORMER" train --config benchmarks/training/finetune.yaml --data "$WORK/data" --init "$WORK/full/weights" \
    --teacher "$WORK/full/weights" --distill-weight 1 --out "$WORK/bigbird-attention-teacher-only" --no-progress
"$PYTHON" benchmarks/training/compare.py --data "$WORK/data" --full "$WORK/full/weights" \
    --model "bigbird attention-only=$WORK/bigbird-attention/weights" \
    --model "bigbird attention-only + distillation 0.5=$WORK/bigbird-attention-distill/weights" \
    --model "bigbird attention-only + teacher only=$WORK/bigbird-attention-teacher-only/weights" \
    --run "full attention from scratch=$WORK/full" --run "bigbird attention-only=$WORK/bigbird-attention" \
    --run "bigbird attention-only + distillation 0.5=$WORK/bigbird-attention-distill" \
    --run "bigbird attention-only + teacher only=$WORK/bigbird-attention-teacher-only" --out "$RESULTS"

for run in full bigbird-attention bigbird-attention-distill bigbird-attention-teacher-only; do
    mkdir -p "$RESULTS/$run"
    cp "$WORK/$run"/{settings.json,config.json,log.jsonl,train_log.csv,eval_log.csv,curves.png} "$RESULTS/$run/"
done

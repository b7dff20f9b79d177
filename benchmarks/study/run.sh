#!/usr/bin/env bash
# The accuracy study of issue 23 (docs/accuracy-study.md): the rows, seeds and decision rules fixed in
# benchmarks/study/settings.json (commit it before the run: the run records its sha256), two (row, seed)
# jobs at a time with one thread each, on `senformer data synthetic --size study` with graded long-range
# signals. Resumable: rerun the same command after an interruption. Results (study.json, table.csv, figures,
# per_seed/*.npz) go to benchmarks/results/accuracy_study/, the write-up to docs/accuracy-study.md; the runs
# and checkpoints stay in WORK_DIR. `python benchmarks/study/recompute.py` then recomputes every interval.
# Usage: benchmarks/study/run.sh [WORK_DIR] [--quick | --estimate]   (from the repository root)
# --estimate first times 20 steps of each kind of run and writes the projection into WORK_DIR/estimate.json.
set -euo pipefail
WORK=${1:-${TMPDIR:-/tmp}/senformer-accuracy-study}
shift || true
SENFORMER=${SENFORMER:-.venv/bin/senformer}
RESULTS=benchmarks/results/accuracy_study  # study.json says whether it was a --quick run; the docs say so too
"$SENFORMER" study accuracy --out "$WORK" --results "$RESULTS" --docs docs/accuracy-study.md --jobs 2 \
    --rules benchmarks/study/settings.json "$@"

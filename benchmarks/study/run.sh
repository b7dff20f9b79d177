#!/usr/bin/env bash
# The accuracy study of issue 14 (docs/accuracy-study.md): rows 1-7 over 3 seeds on `senformer data
# synthetic --size study`, two (row, seed) jobs at a time with one thread each. Resumable: rerun the same
# command after an interruption. Results (study.json, table.csv, figures) go to benchmarks/results/, the
# write-up to docs/accuracy-study.md; the runs and checkpoints stay in WORK_DIR.
# Usage: benchmarks/study/run.sh [WORK_DIR] [--quick | --estimate]   (from the repository root)
# --estimate first times 20 steps of each kind of run and writes the projection into WORK_DIR/estimate.json
# (the write-up quotes it); the full study was projected at ~45 min with 2 jobs on 2 shared cores.
set -euo pipefail
WORK=${1:-${TMPDIR:-/tmp}/senformer-accuracy-study}
shift || true
SENFORMER=${SENFORMER:-.venv/bin/senformer}
RESULTS=benchmarks/results/accuracy_study  # study.json says whether it was a --quick run; the docs say so too
"$SENFORMER" study accuracy --out "$WORK" --results "$RESULTS" --docs docs/accuracy-study.md --jobs 2 "$@"

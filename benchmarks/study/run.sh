#!/usr/bin/env bash
# The accuracy study of issue 14 (docs/accuracy-study.md): rows 1-7 over 3 seeds on `senformer data
# synthetic --size study`, two (row, seed) jobs at a time with one thread each. Resumable: rerun the same
# command after an interruption. Results (study.json, table.csv, figures) go to benchmarks/results/, the
# write-up to docs/accuracy-study.md; the runs and checkpoints stay in WORK_DIR.
# Usage: benchmarks/study/run.sh [WORK_DIR] [--quick | --estimate]   (from the repository root)
set -euo pipefail
WORK=${1:-${TMPDIR:-/tmp}/senformer-accuracy-study}
shift || true
SENFORMER=${SENFORMER:-.venv/bin/senformer}
if [[ " $* " == *" --quick "* ]]; then
    RESULTS=benchmarks/results/accuracy_study_quick
else
    RESULTS=benchmarks/results/accuracy_study
fi
"$SENFORMER" study accuracy --out "$WORK" --results "$RESULTS" --docs docs/accuracy-study.md --jobs 2 "$@"

"""The accuracy study: why the S-Enformer report's sparse model lost accuracy.

The report fine-tuned freshly initialised BigBird layers (no relative positions, key size 192) with the
rest of Enformer frozen and never reached Enformer's accuracy. Two causes are confounded there: the layer
lacks relative positions, and it starts untrained. On synthetic data where attention demonstrably matters
(:data:`senformer.data.synthetic.SIZES` ``"study"``), with every seed on the same dataset, the rows are:

    1 full            full attention from scratch (the teacher and the reference row)
    2 control         row 1 with attention removed (each attention output projection at its fresh value, 0)
    3 zero-shot       row 1's weights run with our ``bigbird`` (relative positions), no training
    4 finetune        row 3 fine-tuned attention-only; ``finetune-distill`` adds distillation from row 1
    5 fresh-ours      row 1's trunk and heads loaded and frozen, fresh ``bigbird`` attention, attention-only
    6 fresh-report    as 5 with the report's layer (no relative positions, key size = dim / heads)
    7 report-all      as 6 with every weight trained

Rows 5-7 train ``fresh_multiple`` x row 4's steps at a constant learning rate after warm-up and are also
reported at row 4's step count from the same run (the run stops there, its weights are kept, and it resumes).
For the first seed, rows 5 and 6 also run at each of ``lr_factors`` x the learning rate for row 4's steps.
Every row trains through ``senformer train`` (a subprocess with one thread) with public settings only;
evaluation uses :func:`senformer.evaluate.evaluate` and :mod:`senformer.analysis`. The modules, each
importing only the ones above it:

    runs.py         StudySettings, the rows, every (row, seed) training run, the job scheduler, prepare
    evaluation.py   one seed's models scored on the test split (evaluate_seed), in its own process
    writeup.py      the prose from study.json's record: summary.md, the write-up and its answer
    results.py      across seeds: summarise (study.json), bootstrap intervals, table, figures
    pipeline.py     run_study (the whole study, resumable) and estimate (timed before running)
    __main__.py     ``python -m senformer.study evaluate OUT SEED INTO``, the evaluation job's process

Layout of ``OUT``::

    study-settings.json   the settings (a rerun with other settings stops unless fresh)
    data/                 the synthetic dataset          model.json   row 1's model
    runs/<run>/           one `senformer train` output (+ train.out; rows 5-7 weights-step-<N>/)
    evaluation/seed-<S>/  per seed: metrics.json and sums.npz (per-example sums for the bootstrap)
    results/              study.json, table.csv, summary.md, curves.png, per_example.png, receptive_field.png

The dataset, each run and each seed's evaluation is one :class:`senformer.outputs.Output`: finished exactly
when its run record (``run.json``, command ``study data``, ``study run`` or ``study evaluate``) carries the
fingerprint of its settings and of what it reads (the dataset, the weights the runs it starts from produced),
so a finished piece is skipped on a rerun and one whose inputs were made anew is made again; a killed run
continues with ``senformer train --resume``.
"""

from .evaluation import (ATTENTION_REMOVED_SKIP, ModelEntry, evaluate_seed, evaluation_output, long_range_tracks, main,
                         model_entries)
from .pipeline import estimate, run_study
from .results import (ATTENTION_MATTERS, TABLE_METRICS, bootstrap_difference, bootstrap_pooled, plot_curves,
                      plot_per_example, plot_receptive_field, read_curves, spread, summarise, table_frame,
                      write_results)
from .runs import (FRESH_ROWS, HEAD, LR_ROWS, ROW_1, ROWS, Job, Run, StudySettings, execute_run, prepare, run_jobs,
                   run_name, run_output, snapshot_path, study_runs)
from .writeup import answer, summary_markdown, write_docs

__all__ = [
    "ATTENTION_MATTERS", "ATTENTION_REMOVED_SKIP", "FRESH_ROWS", "HEAD", "LR_ROWS", "ROW_1", "ROWS", "TABLE_METRICS",
    "Job", "ModelEntry", "Run", "StudySettings", "answer", "bootstrap_difference", "bootstrap_pooled", "estimate",
    "evaluate_seed", "evaluation_output", "execute_run", "long_range_tracks", "main", "model_entries", "plot_curves",
    "plot_per_example", "plot_receptive_field", "prepare", "read_curves", "run_jobs", "run_name", "run_output",
    "run_study", "snapshot_path", "spread", "study_runs", "summarise", "summary_markdown", "table_frame", "write_docs",
    "write_results",
]

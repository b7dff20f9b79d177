"""The accuracy study (issue 14): why the S-Enformer report's sparse model lost accuracy; see results.py."""

from .results import (ATTENTION_MATTERS, ATTENTION_REMOVED_SKIP, FRESH_ROWS, HEAD, LR_ROWS, ROW_1, ROWS, TABLE_METRICS,
                      Job, ModelEntry, Run, StudySettings, answer, bootstrap_difference, bootstrap_pooled, estimate,
                      evaluate_seed, execute_run, long_range_tracks, main, model_entries, plot_curves,
                      plot_per_example, plot_receptive_field, prepare, read_curves, run_jobs, run_name, run_study,
                      snapshot_path, spread, study_runs, summarise, summary_markdown, table_frame, write_docs,
                      write_results)

__all__ = [
    "ATTENTION_MATTERS", "ATTENTION_REMOVED_SKIP", "FRESH_ROWS", "HEAD", "LR_ROWS", "ROW_1", "ROWS", "TABLE_METRICS",
    "Job", "ModelEntry", "Run", "StudySettings", "answer", "bootstrap_difference", "bootstrap_pooled", "estimate",
    "evaluate_seed", "execute_run", "long_range_tracks", "main", "model_entries", "plot_curves", "plot_per_example",
    "plot_receptive_field", "prepare", "read_curves", "run_jobs", "run_name", "run_study", "snapshot_path", "spread",
    "study_runs", "summarise", "summary_markdown", "table_frame", "write_docs", "write_results",
]
